// Tools: the catalog, a form to try one tool, and its output, provider, tokens and cost.
// A chosen tool has its own URL, #/tools/{tool_id}. A run may be answered from
// the server's response cache (the X-Cache header says so); "Fresh answer" asks
// the model again.

import {explain, isMissingRoute} from "./api.js";
import {fill, h, notice, section, tile} from "./dom.js";
import {catalogList, inputFields, textField} from "./forms.js";
import {fmtCount, fmtMs, fmtUsd} from "./format.js";
import {linkTo} from "./links.js";

export function createTools(ctx) {
  const catalogBox = h("div", {id: "tool-catalog"}, notice("info", "Loading the tool catalog…"));
  const detailBox = h("div", {id: "tool-detail"}, notice("info", "Choose a tool", "Pick one from the catalog to try it."));
  const root = h("div", null, h("h1", null, "Tools"),
    h("p", {class: "muted"}, "Each tool is one BMAD agent role. Try one with your own input, or preview the prompt it would send."),
    h("div", {class: "columns"}, section("Catalog", catalogBox), detailBox));
  let loaded = false;
  let tools = [];
  let pending = null;  // a tool id from the URL, chosen once the catalog is in

  function choose(id) {
    const found = tools.find((t) => t.id === id);
    if (found) selectTool(found);
    else fill(detailBox, notice("error", "No such tool", `The catalog has no tool '${id}'.`));
  }

  function selectTool(t) {
    const form = inputFields("tool", t.inputs || []);
    const model = textField("tool-model", "Model", "Optional; the model or alias to use (default bmad-default).", {name: "model"});
    const result = h("div", {class: "tool-result", id: "tool-result", "aria-live": "polite"});
    const run = h("button", {type: "submit", class: "primary"}, "Run tool");
    const preview = h("button", {type: "button", id: "tool-preview"}, "Preview prompt");
    const fresh = h("input", {type: "checkbox", id: "tool-fresh", name: "fresh"});
    const formNode = h("form", {class: "start-form", id: "tool-form", "data-tool": t.id},
      form.fields, model.node,
      h("div", {class: "field checkbox"}, fresh,
        h("label", {for: "tool-fresh"}, "Fresh answer (ask the model again rather than reuse a cached answer)")),
      h("div", {class: "buttons"}, run, preview));
    const body = () => {
      const b = {input: form.values()};
      if (model.control.value.trim()) b.model = model.control.value.trim();
      return b;
    };
    formNode.addEventListener("submit", async (event) => {
      event.preventDefault();
      run.disabled = true;
      fill(result, notice("info", "Running…", "Waiting for the model's answer."));
      try {
        const data = await ctx.api.post(`/bmad/tools/${encodeURIComponent(t.id)}/run`, body(), {fresh: fresh.checked});
        const usage = data.usage || {};
        fill(result,
          h("div", {class: "tiles"},
            tile("provider", "Provider", `${data.provider || "?"}`, data.provider, data.model),
            tile("tokens", "Tokens", fmtCount(usage.total_tokens), usage.total_tokens,
              `${fmtCount(usage.prompt_tokens)} in, ${fmtCount(usage.completion_tokens)} out`),
            tile("cost", "Cost", fmtUsd(data.cost_usd), data.cost_usd),
            tile("latency", "Time", fmtMs(data.latency_ms), data.latency_ms)),
          h("h3", null, "Output"),
          h("pre", {class: "artifact-text", id: "tool-output"}, String(data.output ?? "")));
      } catch (e) {
        fill(result, notice("error", "The tool did not run", isMissingRoute(e)
          ? "This server cannot run tools yet: the provider router is not installed (POST …/run answered 404). Use Preview prompt to see what would be sent."
          : explain(e, `a run of ${t.id}`)));
      } finally {
        run.disabled = false;
      }
    });
    preview.addEventListener("click", async () => {
      try {
        const data = await ctx.api.post(`/bmad/tools/${encodeURIComponent(t.id)}/preview`, body());
        fill(result, h("h3", null, "The prompt a run would send"),
          (data.messages || []).map((m) => h("div", {class: "message", "data-role": m.role},
            h("span", {class: "message-role"}, m.role), h("pre", {class: "artifact-text"}, String(m.content ?? "")))));
      } catch (e) {
        fill(result, notice("error", "No preview", explain(e, `the prompt preview of ${t.id}`)));
      }
    });
    fill(detailBox, section(t.name || t.id,
      h("p", null, t.description || ""),
      h("p", {class: "muted"}, `Role: ${t.role || "–"} · produces ${t.produces || "–"}`),
      formNode, result));
  }

  return {
    root,
    title: "Tools",
    // From the URL: #/tools/{id} chooses that tool.
    open(kind, id) {
      if (kind !== "tools" || !id) return;
      if (loaded) choose(id); else pending = id;
    },
    async refresh() {
      if (loaded) return;
      try {
        const data = await ctx.api.get("/bmad/tools");
        tools = data.tools || [];
        loaded = true;
        fill(catalogBox, tools.length ? catalogList("Tools", tools, (t) => { linkTo(`tools/${t.id}`); selectTool(t); })
          : notice("empty", "No tools in the catalog", "Add tool files under the catalog directory."));
        if (pending !== null) { const id = pending; pending = null; choose(id); }
      } catch (e) {
        fill(catalogBox, notice("error", "Catalog unavailable", explain(e, "the tool catalog")));
      }
    },
  };
}
