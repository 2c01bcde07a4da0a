// Analytics: DAU/MAU, usage trends, top tools, workflow success and error analysis.

import {explain, isMissingRoute} from "./api.js";
import {lineChart} from "./chart.js";
import {fill, h, notice, section, table, tile} from "./dom.js";
import {fmtCount, fmtMs, fmtRatio, fmtUsd} from "./format.js";

function pairs(obj) {
  if (Array.isArray(obj)) return obj;
  return Object.entries(obj || {}).map(([key, value]) => ({key, value}));
}

export function createAnalytics(ctx) {
  const period = h("select", {id: "analytics-days"},
    h("option", {value: "7"}, "Last 7 days"), h("option", {value: "30", selected: true}, "Last 30 days"),
    h("option", {value: "90"}, "Last 90 days"));
  const body = h("div", {id: "analytics-body"});
  const root = h("div", null, h("h1", null, "Analytics"),
    h("div", {class: "toolbar"}, h("label", {for: "analytics-days"}, "Period"), period), body);
  period.addEventListener("change", () => refresh());

  function render(a) {
    const bi = a.business_intelligence || {};
    const trends = bi.usage_trends || [];
    const day = (d) => Date.parse(d + "T00:00:00Z");
    const xFormat = (t) => new Date(t).toISOString().slice(5, 10);
    const series = (key, label, cls) => [{label, cls, points: trends.map((r) => [day(r.date), r[key]]).filter((p) => Number.isFinite(p[0]))}];
    const usage = a.usage || {};
    const tools = (a.tools || {}).top || [];
    const wf = a.workflows || {};
    const errs = bi.error_analysis || {};
    fill(body,
      h("div", {class: "tiles"},
        tile("dau", "Daily active users", fmtCount(bi.dau), bi.dau, "last day"),
        tile("mau", "Monthly active users", fmtCount(bi.mau), bi.mau, "last 30 days"),
        tile("dau_mau", "DAU / MAU", fmtRatio(bi.dau_mau_ratio), bi.dau_mau_ratio),
        tile("requests", "Requests", fmtCount(usage.requests), usage.requests, "in the period"),
        tile("sessions", "Sessions", fmtCount(usage.sessions), usage.sessions, "in the period"),
        tile("error_rate", "Error rate", fmtRatio(errs.error_rate), errs.error_rate, "in the period")),
      section("Usage trend",
        trends.length ? h("div", {class: "charts"},
          lineChart({id: "trend-requests", title: "Requests per day", xFormat, yFormat: fmtCount, series: series("requests", "requests", "s1")}),
          lineChart({id: "trend-errors", title: "Errors per day", xFormat, yFormat: fmtCount, series: series("errors", "errors", "s3")}),
          lineChart({id: "trend-cost", title: "Cost per day", xFormat, yFormat: fmtUsd, series: series("cost_usd", "cost", "s2")}))
          : notice("empty", "No usage recorded in this period", "Requests appear here once the service has handled some.")),
      section("Top tools", table([
        {label: "Tool", cell: (r) => r.tool},
        {label: "Runs", num: true, cell: (r) => fmtCount(r.executions)},
        {label: "Success", num: true, cell: (r) => fmtRatio(r.success_rate)},
        {label: "Avg latency", num: true, cell: (r) => fmtMs(r.avg_latency_ms)},
        {label: "Tokens", num: true, cell: (r) => fmtCount(r.total_tokens ?? ((r.prompt_tokens || 0) + (r.completion_tokens || 0)))},
        {label: "Cost", num: true, cell: (r) => fmtUsd(r.cost_usd)},
      ], tools, {empty: "No tool has been run in this period."})),
      section("Workflow success", table([
        {label: "Workflow", cell: (r) => r.workflow},
        {label: "Started", num: true, cell: (r) => fmtCount(r.started)},
        {label: "Succeeded", num: true, cell: (r) => fmtCount(r.completed)},
        {label: "Failed", num: true, cell: (r) => fmtCount(r.failed)},
        {label: "Cancelled", num: true, cell: (r) => fmtCount(r.cancelled)},
        {label: "Success rate", num: true, cell: (r) => fmtRatio(r.success_rate)},
        {label: "Avg duration", num: true, cell: (r) => fmtMs(r.avg_duration_ms)},
      ], wf.by_workflow || [], {empty: "No workflow has run in this period."})),
      section("Errors",
        h("div", {class: "split"},
          table([{label: "Error type", cell: (r) => r.key}, {label: "Count", num: true, cell: (r) => fmtCount(r.value)}],
            pairs(errs.by_type), {empty: "No errors by type in this period."}),
          table([{label: "Route", cell: (r) => r.key}, {label: "Errors", num: true, cell: (r) => fmtCount(r.value)}],
            pairs(errs.by_route), {empty: "No route answered errors in this period."}),
          table([{label: "Status", cell: (r) => r.key}, {label: "Errors", num: true, cell: (r) => fmtCount(r.value)}],
            pairs(errs.by_status), {empty: "No error statuses in this period."}))));
  }

  let latest = 0;

  async function refresh() {
    const ticket = ++latest;  // a slower answer for an earlier period must not overwrite a newer one
    try {
      const data = await ctx.api.get(`/bmad/analytics?days=${encodeURIComponent(period.value)}`);
      if (ticket === latest) render(data.analytics || {});
    } catch (e) {
      if (ticket === latest) {
        fill(body, notice(isMissingRoute(e) ? "warn" : "error", "Analytics unavailable", explain(e, "the analytics report")));
      }
    }
  }

  return {root, title: "Analytics", refresh};
}
