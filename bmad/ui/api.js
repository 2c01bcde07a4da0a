// The one way this page talks to the server: same-origin fetch, JSON in and
// out, the API key (if any) from sessionStorage sent as a Bearer token.
// No cache directive is sent unless a caller asks for a fresh answer
// (`fresh`): the server's response cache then serves repeated tool runs.

const KEY_NAME = "bmad.apiKey";
let unauthorizedHandler = null;

export class ApiError extends Error {
  constructor(status, type, message, path) {
    super(message);
    this.status = status;
    this.type = type;
    this.path = path;
  }
}

export function getKey() {
  try { return sessionStorage.getItem(KEY_NAME) || ""; } catch (e) { return ""; }
}

export function setKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_NAME, key); else sessionStorage.removeItem(KEY_NAME);
  } catch (e) { /* storage disabled: the key lives only until reload */ }
}

export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

export async function request(method, path, body, {fresh = false, blob = false} = {}) {
  const headers = {Accept: blob ? "*/*" : "application/json"};
  const key = getKey();
  if (key) headers.Authorization = "Bearer " + key;
  if (fresh) headers["Cache-Control"] = "no-cache";
  // The default cache mode adds no header (no-store and reload would send Cache-Control: no-cache);
  // the API's answers carry no validators, so the browser keeps none of them.
  const init = {method, headers, credentials: "omit", redirect: "error"};
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body === undefined ? {} : body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "network", `could not reach the server (${e.message})`, path);
  }
  const ctype = resp.headers.get("content-type") || "";
  let data = null;
  let text = "";
  if (blob && resp.ok) {
    return resp.blob();
  } else if (ctype.startsWith("application/json")) {
    try { data = await resp.json(); } catch (e) { data = null; }
  } else {
    text = await resp.text();
  }
  if (!resp.ok) {
    const err = (data && (data.error || data)) || {};
    const message = typeof err.message === "string" ? err.message : `${method} ${path} answered ${resp.status}`;
    const error = new ApiError(resp.status, err.type || `http_${resp.status}`, message, path);
    if (resp.status === 401 && unauthorizedHandler) unauthorizedHandler(error, key);
    throw error;
  }
  return data !== null ? data : text;
}

export const get = (path) => request("GET", path);
export const post = (path, body, options) => request("POST", path, body, options);

// Fetch `path` (with the key) and hand it to the browser as a download named `filename`.
export async function download(path, filename) {
  saveBlob(await request("GET", path, undefined, {blob: true}), filename);
}

export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// True when the server has no such route at all (that part of the service is not installed).
export function isMissingRoute(error) {
  return error instanceof ApiError && error.status === 404 && /^no route for/.test(error.message);
}

// A sentence a person can act on, for a failed call that fetched `what`.
export function explain(error, what) {
  if (!(error instanceof ApiError)) return `${what}: ${error && error.message ? error.message : error}`;
  if (error.status === 0) return `Could not load ${what}: ${error.message}. The page keeps retrying every 5 s.`;
  if (error.status === 401) return `Could not load ${what}: the server rejected the API key (${error.message}).`;
  if (error.status === 403) return `Your API key may not see ${what}: ${error.message}.`;
  if (isMissingRoute(error)) {
    return `This server does not offer ${what} (${error.path} answered 404): that part of the service is not installed in this version.`;
  }
  if (error.status === 429) return `Rate limited while loading ${what}: ${error.message}. It will be retried.`;
  return `Could not load ${what}: the server answered ${error.status} (${error.type}): ${error.message}`;
}
