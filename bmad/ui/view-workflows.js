// Workflows: the catalog, a start form built from the workflow's inputs, a
// live progress view of a run (steps, artifacts rendered from Markdown with
// downloads, cancel/approve) and the run list. A shown run has its own URL,
// #/runs/{run_id}; a chosen workflow #/workflows/{workflow_id}.

import {explain, isMissingRoute, saveBlob} from "./api.js";
import {badge, fill, h, notice, section, table} from "./dom.js";
import {catalogList, inputFields, textField} from "./forms.js";
import {fmtCount, fmtMs, fmtTime, fmtUsd} from "./format.js";
import {renderMarkdown} from "./markdown.js";
import {linkTo} from "./links.js";

const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const RUN_STATES = ["queued", "running", "waiting_approval", "succeeded", "failed", "cancelled"];
const LIVE_POLL_MS = 2000;  // with the 5 s refresh this stays well inside the default 100 requests/min
const MAX_ARTIFACT_CHARS = 200000;

export function createWorkflows(ctx) {
  const catalogBox = h("div", {id: "workflow-catalog"}, notice("info", "Loading the workflow catalog…"));
  const detailBox = h("div", {id: "workflow-detail"});
  const runBox = h("div", {id: "run-view", "aria-live": "polite"});
  const runsBox = h("div", {id: "run-list"});
  const filterWorkflow = h("select", {id: "runs-filter-workflow"}, h("option", {value: ""}, "All workflows"));
  const filterState = h("select", {id: "runs-filter-state"}, h("option", {value: ""}, "All states"),
    RUN_STATES.map((s) => h("option", {value: s}, s.replace(/_/g, " "))));
  const filterUser = h("input", {id: "runs-filter-user", type: "text", autocomplete: "off"});
  const filters = h("form", {class: "toolbar", id: "runs-filters"},
    h("span", {class: "pair"}, h("label", {for: "runs-filter-workflow"}, "Workflow"), filterWorkflow),
    h("span", {class: "pair"}, h("label", {for: "runs-filter-state"}, "State"), filterState),
    h("span", {class: "pair"}, h("label", {for: "runs-filter-user"}, "User"), filterUser),
    h("button", {type: "submit"}, "Apply filters"));
  const root = h("div", null, h("h1", null, "Workflows"),
    h("p", {class: "muted"}, "Start a BMAD workflow and watch each agent step run; artifacts appear as they are produced."),
    h("div", {class: "columns"},
      section("Catalog", catalogBox),
      h("div", {class: "stack"}, detailBox, runBox)),
    section("Runs", filters, runsBox));

  let catalog = null;
  let pendingWorkflow = null;  // a workflow id from the URL, chosen once the catalog is in
  let currentRun = null;       // run id shown in runBox
  let runTimer = null;
  let polling = false;
  let lastRendered = "";
  let lastState = "";
  let cursorStack = [null];    // cursors of the run-list pages seen so far
  const artifactText = new Map();  // "run/name" -> {text} or {error}; only the shown run's
  let artifactVersion = 0;
  filters.addEventListener("submit", (e) => { e.preventDefault(); cursorStack = [null]; loadRuns(); });

  // -- catalog and start form ----------------------------------------------------------------

  async function loadCatalog() {
    try {
      const data = await ctx.api.get("/bmad/workflows");
      catalog = data.workflows || [];
      if (catalog.length === 0) {
        fill(catalogBox, notice("empty", "No workflows in the catalog", "Add workflow files under the catalog directory."));
        return;
      }
      fill(catalogBox, catalogList("Workflows", catalog, (w) => { linkTo(`workflows/${w.id}`); selectWorkflow(w); }));
      for (const w of catalog) filterWorkflow.appendChild(h("option", {value: w.id}, w.name || w.id));
      if (pendingWorkflow !== null) {
        const wanted = pendingWorkflow;
        pendingWorkflow = null;
        const found = catalog.find((w) => w.id === wanted);
        if (found) selectWorkflow(found);
        else fill(detailBox, notice("error", "No such workflow", `The catalog has no workflow '${wanted}'.`));
      }
      if (!detailBox.firstChild) {
        fill(detailBox, notice("info", "Choose a workflow", "Pick one from the catalog to see its steps and start a run."));
      }
    } catch (e) {
      catalog = null;
      fill(catalogBox, notice("error", "Catalog unavailable", explain(e, "the workflow catalog")));
    }
  }

  function selectWorkflow(w) {
    const form = inputFields("wf", w.inputs || []);
    const title = textField("wf-title", "Run title", "Optional; shown in the run list.", {name: "title", maxlength: "200"});
    const model = textField("wf-model", "Model", "Optional; the model or alias every step uses (default bmad-default).", {name: "model"});
    const approvalsId = "wf-approvals";
    const approvals = h("input", {type: "checkbox", id: approvalsId, name: "approvals"});
    const result = h("div", {class: "form-result", role: "status"});
    const submit = h("button", {type: "submit", class: "primary"}, "Start run");
    const formNode = h("form", {class: "start-form", id: "workflow-form", "data-workflow": w.id},
      form.fields, title.node, model.node,
      h("div", {class: "field checkbox"}, approvals, h("label", {for: approvalsId}, "Stop at approval gates")),
      submit, result);
    formNode.addEventListener("submit", async (event) => {
      event.preventDefault();
      submit.disabled = true;
      fill(result, "Starting…");
      const body = {inputs: form.values()};
      if (title.control.value.trim()) body.title = title.control.value.trim();
      if (model.control.value.trim()) body.model = model.control.value.trim();
      if (approvals.checked) body.approvals = true;
      try {
        const data = await ctx.api.post(`/bmad/workflows/${encodeURIComponent(w.id)}/runs`, body);
        fill(result, notice("info", "Run accepted", `Run ${data.run_id} was accepted; its progress is shown below.`));
        showRun(data.run_id);
        loadRuns();
      } catch (e) {
        fill(result, notice("error", "The run did not start", isMissingRoute(e)
          ? "This server cannot run workflows yet: the workflow engine is not installed (POST …/runs answered 404)."
          : explain(e, "a new run")));
      } finally {
        submit.disabled = false;
      }
    });
    fill(detailBox, section(w.name || w.id,
      h("p", null, w.description || ""),
      h("ol", {class: "steps-plan"}, (w.steps || []).map((s) => h("li", null,
        h("strong", null, s.id), ` · ${s.tool}`,
        h("span", {class: "sub"}, `${(s.consumes || []).length ? (s.consumes || []).join(", ") : "inputs"} → ${s.produces}${s.gate ? " · approval gate" : ""}`)))),
      h("h3", null, "Start a run"), formNode));
  }

  // -- one run, live -------------------------------------------------------------------------

  function showRun(runId) {
    linkTo(`runs/${runId}`);
    if (runId === currentRun) { pollRun(); return; }
    currentRun = runId;
    lastRendered = "";
    lastState = "";
    artifactText.clear();
    clearTimeout(runTimer);
    runTimer = null;
    fill(runBox, section("Run", notice("info", `Loading run ${runId}…`)));
    pollRun();
  }

  async function pollRun() {
    const runId = currentRun;
    if (!runId || polling) return;
    polling = true;
    try {
      await pollOnce(runId);
    } finally {
      polling = false;
    }
    if (currentRun && currentRun !== runId) pollRun();  // another run was chosen meanwhile
  }

  async function pollOnce(runId) {
    clearTimeout(runTimer);
    runTimer = null;
    let run = null;
    try {
      run = (await ctx.api.get(`/bmad/runs/${encodeURIComponent(runId)}`)).run;
    } catch (e) {
      if (runId === currentRun) fill(runBox, section("Run", notice("error", "Run unavailable", explain(e, `run ${runId}`))));
    }
    if (runId !== currentRun) return;
    if (run) {
      await loadArtifacts(run);
      if (runId !== currentRun) return;
      // Re-render only on change, so focus and scroll stay put while a run is idle.
      const signature = JSON.stringify(run) + artifactVersion;
      if (signature !== lastRendered) {
        lastRendered = signature;
        renderRun(run);
      }
      if (run.state !== lastState) {
        if (lastState) loadRuns();  // keep the run list's state column in step with the run
        lastState = run.state;
      }
    }
    if ((!run || !FINAL.has(run.state)) && !ctx.isPaused()) runTimer = setTimeout(pollRun, run ? LIVE_POLL_MS : 5000);
  }

  async function loadArtifacts(run) {
    for (const a of run.artifacts || []) {
      const key = `${run.run_id}/${a.name}`;
      if (artifactText.has(key) && !artifactText.get(key).error) continue;  // failed loads are retried
      try {
        const text = await ctx.api.get(`/bmad/runs/${encodeURIComponent(run.run_id)}/artifacts/${encodeURIComponent(a.name)}`);
        artifactText.set(key, {text: typeof text === "string" ? text : JSON.stringify(text, null, 2)});
      } catch (e) {
        artifactText.set(key, {error: explain(e, `artifact ${a.name}`)});
      }
      artifactVersion += 1;
    }
  }

  async function act(run, action) {
    try {
      await ctx.api.post(`/bmad/runs/${encodeURIComponent(run.run_id)}/${action}`, {});
    } catch (e) {
      runBox.prepend(notice("error", `Could not ${action} the run`, explain(e, `${action} of run ${run.run_id}`)));
      return;
    }
    pollRun();
    loadRuns();
  }

  function renderRun(run) {
    const steps = run.steps || [];
    const done = steps.filter((s) => s.state === "succeeded" || s.state === "skipped").length;
    const totals = run.totals || {};
    const cancel = h("button", {type: "button", id: "run-cancel", disabled: FINAL.has(run.state)}, "Cancel run");
    const approve = h("button", {type: "button", id: "run-approve", class: "primary", disabled: run.state !== "waiting_approval"}, "Approve and continue");
    cancel.addEventListener("click", () => act(run, "cancel"));
    approve.addEventListener("click", () => act(run, "approve"));
    const progress = h("progress", {max: String(steps.length || 1), value: String(done), id: "run-progress",
      "aria-label": `${done} of ${steps.length} steps done`});
    const artifacts = (run.artifacts || []).map((a) => {
      const got = artifactText.get(`${run.run_id}/${a.name}`) || {};
      const text = got.text || "";
      const save = h("button", {type: "button", class: "artifact-download", "data-download": a.name,
        disabled: got.text === undefined, "aria-label": `Download ${a.name} as Markdown`}, "Download .md");
      save.addEventListener("click", () => saveBlob(new Blob([text], {type: "text/markdown;charset=utf-8"}), `${a.name}.md`));
      return h("details", {class: "artifact", open: true, "data-artifact": a.name},
        h("summary", null, h("strong", null, a.name), ` · from ${a.produced_by || "?"} · ${fmtCount(a.chars)} characters`),
        h("div", {class: "buttons"}, save),
        got.error ? notice("error", "Could not load this artifact", got.error)
          : renderMarkdown(text.length > MAX_ARTIFACT_CHARS ? text.slice(0, MAX_ARTIFACT_CHARS) + "\n\n… (truncated; download it for the whole text)" : text));
    });
    const zip = h("button", {type: "button", id: "run-artifacts-zip", disabled: !(run.artifacts || []).length},
      "Download all artifacts (.zip)");
    zip.addEventListener("click", async () => {
      try {
        await ctx.api.download(`/bmad/runs/${encodeURIComponent(run.run_id)}/artifacts.zip`, `${run.run_id}-artifacts.zip`);
      } catch (e) {
        runBox.prepend(notice("error", "Could not download the artifacts", explain(e, `the artifacts of run ${run.run_id}`)));
      }
    });
    fill(runBox, h("section", {class: "card", "data-run": run.run_id, "data-state": run.state},
      h("h2", null, "Run ", h("code", null, run.run_id)),
      h("p", null, badge(run.state, "run-state"), ` ${run.workflow}${run.title ? ` · ${run.title}` : ""} · by ${run.user || "?"}`),
      h("div", {class: "progress-row"}, progress, h("span", null, `${done} of ${steps.length} steps`)),
      h("p", {class: "muted"}, `Created ${fmtTime(run.created_at)} · started ${fmtTime(run.started_at)} · finished ${fmtTime(run.finished_at)} · `,
        `${fmtCount((totals.prompt_tokens || 0) + (totals.completion_tokens || 0))} tokens · ${fmtUsd(totals.cost_usd)} · ${fmtMs(totals.duration_ms)} working`,
        totals.approval_wait_ms ? ` · ${fmtMs(totals.approval_wait_ms)} waiting for approval` : ""),
      h("div", {class: "buttons"}, approve, cancel),
      table([
        {label: "Step", cell: (s) => h("span", null, h("strong", null, s.id), h("span", {class: "sub"}, s.tool))},
        {label: "State", cell: (s) => badge(s.state, "step-state")},
        {label: "Provider", cell: (s) => s.provider ? `${s.provider}${s.model ? ` / ${s.model}` : ""}` : "–"},
        {label: "Tokens", num: true, cell: (s) => fmtCount((s.prompt_tokens || 0) + (s.completion_tokens || 0))},
        {label: "Cost", num: true, cell: (s) => fmtUsd(s.cost_usd)},
        {label: "Time", num: true, cell: (s) => fmtMs(s.latency_ms)},
        {label: "Error", cell: (s) => s.error ? h("span", {class: "error-text"}, String(s.error)) : ""},
      ], steps, {caption: "Steps", empty: "This run has no steps.", rowAttrs: (s) => ({"data-step": s.id, "data-state": s.state})}),
      h("h3", null, "Artifacts"),
      h("p", null, zip, " ", h("a", {href: `#/runs/${encodeURIComponent(run.run_id)}`, id: "run-link"}, "Link to this run")),
      artifacts.length ? artifacts : notice("empty", "No artifacts yet", "Each step's output appears here as soon as the step succeeds.")));
  }

  // -- the run list --------------------------------------------------------------------------

  let runsTicket = 0;

  async function loadRuns() {
    const ticket = ++runsTicket;  // only the newest list request may render
    const q = new URLSearchParams({limit: "20"});
    if (filterWorkflow.value) q.set("workflow", filterWorkflow.value);
    if (filterState.value) q.set("state", filterState.value);
    if (filterUser.value.trim()) q.set("user", filterUser.value.trim());
    const cursor = cursorStack[cursorStack.length - 1];
    if (cursor) q.set("cursor", cursor);
    let data;
    try {
      data = await ctx.api.get(`/bmad/runs?${q}`);
    } catch (e) {
      if (ticket !== runsTicket) return;
      fill(runsBox, notice(isMissingRoute(e) ? "warn" : "error", "Run list unavailable", isMissingRoute(e)
        ? "This server does not keep workflow runs yet: the workflow engine is not installed (/bmad/runs answered 404)."
        : explain(e, "the run list")));
      return;
    }
    if (ticket !== runsTicket) return;
    const runs = data.runs || [];
    const pager = h("div", {class: "buttons"});
    if (cursorStack.length > 1) {
      pager.appendChild(h("button", {type: "button", onclick: () => { cursorStack.pop(); loadRuns(); }}, "Newer runs"));
    }
    if (data.next_cursor) {
      pager.appendChild(h("button", {type: "button", onclick: () => { cursorStack.push(data.next_cursor); loadRuns(); }}, "Older runs"));
    }
    fill(runsBox, table([
      {label: "Run", cell: (r) => h("a", {href: `#/runs/${encodeURIComponent(r.run_id)}`, class: "link",
        "aria-label": `Show run ${r.run_id}`}, String(r.run_id).slice(0, 12))},
      {label: "Workflow", cell: (r) => h("span", null, r.workflow || "", r.title ? h("span", {class: "sub"}, r.title) : null)},
      {label: "User", cell: (r) => r.user || "–"},
      {label: "State", cell: (r) => h("span", null, badge(r.state), r.error ? h("span", {class: "sub error-text"}, String(r.error)) : null)},
      {label: "Created", cell: (r) => fmtTime(r.created_at)},
      {label: "Finished", cell: (r) => fmtTime(r.finished_at)},
    ], runs, {caption: "Runs, newest first", empty: "No runs match these filters. Start one from the catalog above.",
      rowAttrs: (r) => ({"data-run": r.run_id})}), pager);
  }

  return {
    root,
    title: "Workflows",
    // From the URL: #/runs/{id} shows that run, #/workflows/{id} chooses that workflow.
    open(kind, id) {
      if (kind === "runs" && id) showRun(id);
      if (kind === "workflows" && id) {
        const found = catalog && catalog.find((w) => w.id === id);
        if (found) selectWorkflow(found); else pendingWorkflow = id;
      }
    },
    async refresh() {
      const work = [loadRuns()];
      if (!catalog) work.push(loadCatalog());
      if (currentRun && runTimer === null) work.push(pollRun());  // a live run already polls itself
      await Promise.allSettled(work);
    },
  };
}
