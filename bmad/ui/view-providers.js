// Providers: health, circuit state, success rate, latency, tokens and cost per provider.
// With a user key the server sends only health and circuit, plus the caller's own usage.

import {explain, isMissingRoute} from "./api.js";
import {badge, fill, h, notice, table} from "./dom.js";
import {fmtCount, fmtMs, fmtRatio, fmtTime, fmtUsd} from "./format.js";

export function createProviders(ctx) {
  const body = h("div", {id: "providers-body"});
  const root = h("div", null, h("h1", null, "Providers"),
    h("p", {class: "muted"}, "Every configured LLM provider as the router sees it. A circuit opens after repeated failures and the router skips that provider until it recovers."),
    body);

  function render(providers, own) {
    if (providers.length === 0) {
      fill(body, notice("empty", "No providers configured",
        "Add providers in the config file or set OPENAI_API_KEY, ANTHROPIC_API_KEY or the AZURE_OPENAI_* variables."));
      return;
    }
    const down = providers.filter((p) => p.circuit_state === "open" || p.healthy === false);
    fill(body,
      down.length ? notice("warn", `${down.length} of ${providers.length} providers unavailable`,
        down.map((p) => `${p.name}: ${p.circuit_state === "open" ? "circuit open" : "health check failing"}${p.last_error ? ` (${p.last_error})` : ""}`).join("; ")) : null,
      own ? notice("info", "Your usage only", "Traffic, tokens and cost of all callers need an admin key; the figures below are your own over the last 24 hours.") : null,
      table([
        {label: "Provider", cell: (p) => h("span", null, h("strong", null, p.name), h("span", {class: "sub"}, `${p.type} · ${p.host || (own ? "" : "built in")}`))},
        {label: "Health", cell: (p) => badge(p.healthy === false ? "down" : p.healthy === true ? "healthy" : "unknown")},
        {label: "Circuit", cell: (p) => badge(p.circuit_state || "unknown", "circuit")},
        ...(own ? [
          {label: "Your requests", num: true, cell: (p) => { const u = p.your_usage || {}; return `${fmtCount(u.requests)}${u.failures ? ` (${fmtCount(u.failures)} failed)` : ""}`; }},
          {label: "Your tokens", num: true, cell: (p) => { const u = p.your_usage || {}; return fmtCount((u.prompt_tokens || 0) + (u.completion_tokens || 0)); }},
          {label: "Your cost", num: true, cell: (p) => fmtUsd((p.your_usage || {}).cost_usd)},
        ] : [
        {label: "Success", num: true, cell: (p) => (p.requests ? fmtRatio(p.success_rate) : "no requests yet")},
        {label: "Requests", num: true, cell: (p) => `${fmtCount(p.requests)}${p.failures ? ` (${fmtCount(p.failures)} failed)` : ""}`},
        {label: "Avg latency", num: true, cell: (p) => fmtMs(p.avg_latency_ms)},
        {label: "p95 latency", num: true, cell: (p) => fmtMs(p.p95_latency_ms)},
        {label: "Tokens", num: true, cell: (p) => fmtCount((p.prompt_tokens || 0) + (p.completion_tokens || 0))},
        {label: "Cost", num: true, cell: (p) => fmtUsd(p.cost_usd)},
        ]),
        {label: "Last check", cell: (p) => h("span", null, fmtTime(p.last_check), p.last_error ? h("span", {class: "sub error-text"}, p.last_error) : null)},
      ], providers, {caption: "Providers", rowAttrs: (p) => ({"data-provider": p.name, "data-circuit": p.circuit_state})}));
  }

  return {
    root,
    title: "Providers",
    async refresh() {
      try {
        const data = await ctx.api.get("/bmad/providers");
        render(Array.isArray(data.providers) ? data.providers : [], data.scope === "own");
      } catch (e) {
        fill(body, notice(isMissingRoute(e) ? "warn" : "error", "Provider status unavailable", explain(e, "the provider list")));
      }
    },
  };
}
