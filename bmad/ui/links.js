// Deep links: each run, tool and workflow the console shows has its own URL
// (#/runs/{id}, #/tools/{id}, #/workflows/{id}), so it can be bookmarked,
// shared and reopened. The shell reads the hash; views write it here.

// The view and the thing in it that a hash names: {view, kind, id}.
export function parseHash(hash) {
  const parts = String(hash || "").replace(/^#\/?/, "").split("/");
  const kind = parts[0] || "";
  let id = "";
  try { id = decodeURIComponent(parts.slice(1).join("/")); } catch (e) { id = ""; }
  const view = kind === "runs" ? "workflows" : kind;
  return {view, kind, id};
}

// Show `path` (e.g. "runs/run_123") in the address bar without reloading anything;
// a new history entry, so Back returns to what was shown before.
export function linkTo(path) {
  const [kind, ...rest] = path.split("/");
  const hash = `#/${kind}/${rest.map(encodeURIComponent).join("/")}`;
  if (location.hash !== hash) history.pushState(null, "", hash);
}
