"""Helpers for the workflow tests: a small test catalog, fake upstreams behind the router, run polling."""

import json
from pathlib import Path

from tests.support import poll

STATUS_BLOCK = '```json\n{"status": "complete", "assumptions": ["a1"], "open_questions": []}\n```'

# A diamond: a -> (b, c) -> d. b and c consume only a, so they run side by side.
DIAMOND = [("a", []), ("b", ["art-a"]), ("c", ["art-a"]), ("d", ["art-b", "art-c"])]


def tool_json(tool_id):
    """A minimal catalog tool whose instructions name it, so a recorded prompt tells which step sent it."""
    return {"id": f"t-{tool_id}", "name": f"Tool {tool_id}", "description": f"Test tool {tool_id}.",
            "role": f"Tester {tool_id}", "instructions": f"You are test tool {tool_id}. Write artifact {tool_id}.",
            "inputs": [{"name": "idea", "required": False, "description": "The idea."}],
            "consumes": [], "produces": f"art-{tool_id}"}


def write_catalog(directory, workflow_id="diamond", steps=DIAMOND, gate=None):
    """Write a test catalog (one tool per step) to ``directory``; returns its path as a string."""
    directory = Path(directory)
    (directory / "tools").mkdir(parents=True, exist_ok=True)
    (directory / "workflows").mkdir(parents=True, exist_ok=True)
    for step_id, _ in steps:
        (directory / "tools" / f"t-{step_id}.json").write_text(json.dumps(tool_json(step_id)))
    workflow = {"id": workflow_id, "name": f"Test {workflow_id}", "description": "A test workflow.",
                "inputs": [{"name": "idea", "required": True, "description": "The idea."}],
                "steps": [dict({"id": step_id, "tool": f"t-{step_id}", "produces": f"art-{step_id}",
                                "consumes": consumes}, **({"gate": "approval"} if gate == step_id else {}))
                          for step_id, consumes in steps]}
    (directory / "workflows" / f"{workflow_id}.json").write_text(json.dumps(workflow))
    return str(directory)


def wait_chat(upstream, n, timeout=10):
    """Wait until ``upstream`` has received ``n`` chat calls (health checks of the models list do not count)."""
    if not poll(lambda: sum(r.route == "chat" for r in upstream.requests) >= n, timeout=timeout):
        raise AssertionError(f"the upstream did not get {n} chat calls in {timeout} s")


def step_of(rec):
    """Which test step a recorded upstream chat request belongs to (from its system message)."""
    system = rec.json["messages"][0]["content"]
    return system.split("test tool ", 1)[1].split(".", 1)[0]


def reply_for(rec):
    """The fake upstream's answer: names the step, ends with a status block."""
    return f"# Artifact of step {step_of(rec)}\n\nBody of {step_of(rec)}.\n\n{STATUS_BLOCK}"


def provider_config(*upstreams):
    """Config that routes ``bmad-default`` through ``upstreams`` in priority order."""
    names = [f"fake{i}" for i in range(len(upstreams))]
    return {"providers": [{"name": name, "type": "openai", "base_url": up.base_url, "api_key": "sk-test"}
                          for name, up in zip(names, upstreams)],
            "models": {"bmad-default": [f"{name}/gpt-4o-mini" for name in names]},
            "routing": {"strategy": "priority"}}


def start_with_upstreams(start_app, upstreams, data=None, **kw):
    """A started service whose steps go through the router to ``upstreams``, in priority order."""
    return start_app(dict(data or {}, **provider_config(*upstreams)), **kw)


def start_run(client, workflow="diamond", inputs=None, **body):
    """POST a run; returns its id (asserting 202)."""
    resp = client.post(f"/bmad/workflows/{workflow}/runs", dict(body, inputs=inputs or {"idea": "a test idea"}))
    assert resp.status == 202, (resp.status, resp.json)
    return resp.json["run_id"]


def wait_run(client, run_id, seconds=20, until=None):
    """Long-poll a run until it is final (or ``until(run)`` holds); returns the run."""
    seen = {}

    def arrived():
        resp = client.get(f"/bmad/runs/{run_id}?wait={min(5, seconds)}" if until is None else f"/bmad/runs/{run_id}")
        assert resp.status == 200, (resp.status, resp.json)
        run = seen["run"] = resp.json["run"]
        return until(run) if until else run["state"] in ("succeeded", "failed", "cancelled")

    if poll(arrived, timeout=seconds, interval=0 if until is None else 0.01):  # without until the GET long-polls
        return seen["run"]
    raise AssertionError(f"run {run_id} did not get there in {seconds} s: {seen['run']['state']}")


def steps_by_id(run):
    """A run's steps by id."""
    return {step["id"]: step for step in run["steps"]}
