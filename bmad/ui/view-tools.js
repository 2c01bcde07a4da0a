// Tools: the catalog, a form to try one tool, and its output, provider, tokens and cost.

import {explain, isMissingRoute} from "./api.js";
import {fill, h, notice, section, tile} from "./dom.js";
import {catalogList, inputFields, textField} from "./forms.js";
import {fmtCount, fmtMs, fmtUsd} from "./format.js";

export function createTools(ctx) {
  const catalogBox = h("div", {id: "tool-catalog"}, notice("info", "Loading the tool catalog…"));
  const detailBox = h("div", {id: "tool-detail"}, notice("info", "Choose a tool", "Pick one from the catalog to try it."));
  const root = h("div", null, h("h1", null, "Tools"),
    h("p", {class: "muted"}, "Each tool is one BMAD agent role. Try one with your own input, or preview the prompt it would send."),
    h("div", {class: "columns"}, section("Catalog", catalogBox), detailBox));
  let loaded = false;

  function selectTool(t) {
    const form = inputFields("tool", t.inputs || []);
    const model = textField("tool-model", "Model", "Optional; the model or alias to use (default bmad-default).", {name: "model"});
    const result = h("div", {class: "tool-result", id: "tool-result", "aria-live": "polite"});
    const run = h("button", {type: "submit", class: "primary"}, "Run tool");
    const preview = h("button", {type: "button", id: "tool-preview"}, "Preview prompt");
    const formNode = h("form", {class: "start-form", id: "tool-form", "data-tool": t.id},
      form.fields, model.node, h("div", {class: "buttons"}, run, preview));
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
        const data = await ctx.api.post(`/bmad/tools/${encodeURIComponent(t.id)}/run`, body());
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
    async refresh() {
      if (loaded) return;
      try {
        const data = await ctx.api.get("/bmad/tools");
        const tools = data.tools || [];
        loaded = true;
        fill(catalogBox, tools.length ? catalogList("Tools", tools, selectTool)
          : notice("empty", "No tools in the catalog", "Add tool files under the catalog directory."));
      } catch (e) {
        fill(catalogBox, notice("error", "Catalog unavailable", explain(e, "the tool catalog")));
      }
    },
  };
}
