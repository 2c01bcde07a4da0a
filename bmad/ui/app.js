// The shell: navigation between the five views (and the deep links into
// them: #/runs/{id}, #/tools/{id}, #/workflows/{id}), the 5 s refresh with its
// pause button, and the API-key prompt.

import * as api from "./api.js";
import {fmtClock} from "./format.js";
import {parseHash} from "./links.js";
import {createOverview} from "./view-overview.js";
import {createProviders} from "./view-providers.js";
import {createAnalytics} from "./view-analytics.js";
import {createWorkflows} from "./view-workflows.js";
import {createTools} from "./view-tools.js";

const REFRESH_MS = 5000;
const VIEW_IDS = ["overview", "providers", "analytics", "workflows", "tools"];

const state = {paused: false, timer: null, active: null, views: {}, busy: false, again: false, authOpen: false};
const ctx = {api, isPaused: () => state.paused};

function $(id) { return document.getElementById(id); }

function currentViewId() {
  const {view} = parseHash(location.hash);
  return VIEW_IDS.includes(view) ? view : "overview";
}

// Show the view the address names and, for a deep link, the run, tool or workflow in it.
function followHash() {
  const {kind, id} = parseHash(location.hash);
  const view = currentViewId();
  if (id && state.views[view].open) state.views[view].open(kind, id);
  if (view !== state.active) showView(view);
}

function showView(id) {
  for (const link of document.querySelectorAll("#tabs a")) {
    if (link.dataset.view === id) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const [vid, view] of Object.entries(state.views)) view.root.hidden = vid !== id;
  state.active = id;
  document.title = `${state.views[id].title} · bmad-api console`;
  refresh();
}

async function refresh() {
  if (state.authOpen) return;  // waiting for a key; submitting one refreshes
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  state.again = false;
  try {
    // The overview's charts come from the server's own 15-minute history: nothing to sample here.
    await Promise.allSettled([state.views[state.active].refresh()]);
    $("refresh-state").textContent = state.paused
      ? `Paused · last updated ${fmtClock(new Date())}`
      : `Refreshes every 5 s · last updated ${fmtClock(new Date())}`;
  } finally {
    state.busy = false;
  }
  if (state.again) refresh();
}

function schedule() {
  clearTimeout(state.timer);
  if (!state.paused) state.timer = setTimeout(async () => { await refresh(); schedule(); }, REFRESH_MS);
}

function setPaused(paused) {
  state.paused = paused;
  const button = $("pause");
  button.setAttribute("aria-pressed", String(paused));
  button.textContent = paused ? "Resume" : "Pause";
  $("refresh-state").textContent = paused ? "Paused: press Resume or Refresh now" : "Refreshes every 5 s";
  schedule();
}

// -- the API-key prompt ----------------------------------------------------------------------

function showAuth(message, isError) {
  state.authOpen = true;
  $("auth").hidden = false;
  $("main").hidden = true;  // nothing behind the prompt can load without a key
  const err = $("auth-error");
  err.hidden = !isError;
  err.textContent = isError ? message : "";
  if (!isError && message) $("auth-message").textContent = message;
  $("api-key").focus();
}

function hideAuth() {
  state.authOpen = false;
  $("auth").hidden = true;
  $("main").hidden = false;
  $("auth-error").hidden = true;
}

function onUnauthorized(error, sentKey) {
  if (sentKey !== api.getKey()) return;  // an answer to a request sent with an older key
  if (sentKey) {
    api.setKey("");
    showAuth(`The API key was rejected by the server (${error.message}). Check it and enter it again.`, true);
  } else if (!state.authOpen) {
    showAuth("This server requires an API key. Enter it once; it is kept in this tab only and sent as a Bearer token.", false);
  }
}

async function submitKey(event) {
  event.preventDefault();
  const input = $("api-key");
  const key = input.value.trim();
  if (!key) return;
  api.setKey(key);
  try {
    // Any route that needs a key will do; the catalog is cheap.
    await api.get("/bmad/tools");
    input.value = "";
    hideAuth();
    $("whoami").textContent = "Using the API key from this tab's session.";
    refresh();
  } catch (e) {
    if (e.status !== 401) {
      hideAuth();
      refresh();
    }
  }
}

function init() {
  const main = $("main");
  const factories = {overview: createOverview, providers: createProviders, analytics: createAnalytics,
    workflows: createWorkflows, tools: createTools};
  for (const id of VIEW_IDS) {
    const view = factories[id](ctx);
    view.root.id = `view-${id}`;
    view.root.classList.add("view");
    view.root.hidden = true;
    main.appendChild(view.root);
    state.views[id] = view;
  }
  api.onUnauthorized(onUnauthorized);
  $("auth-form").addEventListener("submit", submitKey);
  $("auth-forget").addEventListener("click", () => { api.setKey(""); showAuth("Key forgotten. Enter a key to continue.", false); });
  $("pause").addEventListener("click", () => setPaused(!state.paused));
  $("refresh-now").addEventListener("click", () => refresh());
  window.addEventListener("hashchange", followHash);
  window.addEventListener("popstate", followHash);  // Back/Forward over links the views pushed
  if (api.getKey()) $("whoami").textContent = "Using the API key from this tab's session.";
  followHash();
  schedule();
}

init();
