// Overview: status, version, uptime and the live request figures, with
// charts of the last 15 minutes as the server recorded them (the history in
// /bmad/performance), so they are full on the first load.

import {explain} from "./api.js";
import {lineChart} from "./chart.js";
import {h, fill, notice, tile} from "./dom.js";
import {fmtClock, fmtCount, fmtDuration, fmtMs, fmtRatio} from "./format.js";

const WINDOW_MS = 15 * 60 * 1000;

// The error rate over the performance window, from its per-route counts.
function perfErrorRate(stats) {
  const routes = Object.values(stats.by_route || {});
  const count = routes.reduce((a, r) => a + (r.count || 0), 0);
  const errors = routes.reduce((a, r) => a + (r.errors || 0), 0);
  return count ? errors / count : 0;
}

export function createOverview(ctx) {
  const root = h("div", {"aria-labelledby": "overview-title"});
  const heading = h("h1", {id: "overview-title"}, "Overview");
  const statusBox = h("div", {class: "tiles", id: "overview-status"});
  const metricsBox = h("div", {class: "tiles", id: "overview-metrics"});
  const messages = h("div", {class: "messages"});
  const charts = h("div", {class: "charts", id: "overview-charts"});
  root.append(heading, messages, statusBox, metricsBox,
    h("section", {class: "card"}, h("h2", null, "Last 15 minutes"),
      h("p", {class: "muted", id: "overview-charts-note"}, "As the server recorded them, in 30 s points; "
        + "health checks, metrics scrapes and this console's own files are not counted."), charts));

  let history = {points: [], point_seconds: 30};
  let latest = {health: null, perf: null, realtime: null, errors: {}};

  async function load() {
    const [health, perf, realtime] = await Promise.allSettled([
      ctx.api.get("/bmad/health"), ctx.api.get("/bmad/performance"), ctx.api.get("/bmad/analytics/real-time")]);
    latest = {
      health: health.status === "fulfilled" ? health.value : null,
      perf: perf.status === "fulfilled" ? perf.value.stats : null,
      realtime: realtime.status === "fulfilled" ? realtime.value.real_time_metrics || null : null,
      errors: {
        health: health.status === "rejected" ? health.reason : null,
        perf: perf.status === "rejected" ? perf.reason : null,
        realtime: realtime.status === "rejected" ? realtime.reason : null,
      },
    };
    if (latest.perf && latest.perf.history && Array.isArray(latest.perf.history.points)) {
      history = latest.perf.history;
    }
  }

  function render() {
    const {health, perf, realtime, errors} = latest;
    const msgs = [];
    if (errors.health) msgs.push(notice("error", "Status unavailable", explain(errors.health, "the service status")));
    if (errors.perf) msgs.push(notice("error", "Request figures unavailable", explain(errors.perf, "request statistics (/bmad/performance)")));
    if (errors.realtime) msgs.push(notice(errors.realtime.status === 404 ? "warn" : "error", "Real-time analytics unavailable",
      explain(errors.realtime, "real-time analytics (/bmad/analytics/real-time)")));
    fill(messages, msgs);

    fill(statusBox,
      tile("status", "Status", health ? health.status : "unknown", health ? health.status : null),
      tile("version", "Version", health ? health.version : "–", health ? health.version : null),
      tile("uptime", "Uptime", health ? fmtDuration(health.uptime_seconds) : "–", health ? health.uptime_seconds : null));
    const statusTile = statusBox.firstChild;
    statusTile.classList.add(health && health.status === "healthy" ? "good" : "bad");

    const p = perf || {};
    const r = realtime || {};
    const cache = p.cache || {};
    const errRate = realtime ? r.error_rate_5m : perf ? perfErrorRate(p) : null;
    fill(metricsBox,
      tile("requests_per_minute", "Requests / min", fmtCount(p.requests_per_minute), p.requests_per_minute, "last 5 min"),
      tile("p50_ms", "Latency p50", fmtMs(p.p50_ms), p.p50_ms, "last 5 min"),
      tile("p95_ms", "Latency p95", fmtMs(p.p95_ms), p.p95_ms, "last 5 min"),
      tile("error_rate", "Error rate", fmtRatio(errRate), errRate, realtime ? "last 5 min, analytics" : "last 5 min, by route"),
      tile("cache_hit_rate", "Cache hit ratio", fmtRatio(cache.hit_rate), cache.hit_rate,
        cache.hits !== undefined ? `${fmtCount(cache.hits)} hits, ${fmtCount(cache.misses)} misses` : null),
      tile("active_users", "Active users", realtime ? fmtCount(r.active_users_5m) : "–", realtime ? r.active_users_5m : null, "last 5 min"),
      tile("workflows_running", "Workflows running", realtime ? fmtCount(r.workflows_running) : "–", realtime ? r.workflows_running : null, "now"));

    // The server's clock places the points; the window ends at its newest point.
    const points = history.points || [];
    const end = points.length ? (points[points.length - 1].t + (history.point_seconds || 30)) * 1000 : Date.now();
    const xDomain = [end - WINDOW_MS, end];
    const pick = (key) => points.filter((s) => Number.isFinite(s[key])).map((s) => [s.t * 1000, s[key]]);
    const empty = perf && !perf.history ? "The 15-minute history needs an admin key."
      : "No requests recorded yet; the server adds a point every 30 s.";
    fill(charts,
      lineChart({id: "rpm", title: "Requests per minute", xDomain, xFormat: (t) => fmtClock(new Date(t)), yFormat: fmtCount, empty,
        series: [{label: "req/min", cls: "s1", points: pick("requests_per_minute")}]}),
      lineChart({id: "latency", title: "Latency", xDomain, xFormat: (t) => fmtClock(new Date(t)), yFormat: fmtMs, empty,
        series: [{label: "p50", cls: "s1", points: pick("p50_ms")}, {label: "p95", cls: "s2", points: pick("p95_ms")}]}),
      lineChart({id: "errors", title: "Error rate", xDomain, xFormat: (t) => fmtClock(new Date(t)), yFormat: fmtRatio, empty,
        series: [{label: "errors", cls: "s3", points: pick("error_rate")}]}));
  }

  return {
    root,
    title: "Overview",
    async refresh() { await load(); render(); },
  };
}
