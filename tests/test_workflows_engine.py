"""Workflow execution against fake upstreams: parallelism, prompts, models, failover, retries, cancel, gates."""

import threading

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.support import eventually
from tests.workflow_support import (DIAMOND, reply_for, start_run, start_with_upstreams, step_of, steps_by_id,
                                    wait_chat, wait_run, write_catalog)


@pytest.fixture
def upstream():
    with FakeUpstream("openai", api_key="sk-test", reply=reply_for) as up:
        yield up


@pytest.fixture
def catalog(tmp_path):
    return write_catalog(tmp_path / "catalog")


def test_parallel_steps_overlap_and_dependent_ones_do_not(start_app, client_for, upstream, catalog):
    delay = 0.3
    upstream.delay_seconds = delay
    service = start_with_upstreams(start_app, [upstream], {"catalog_dir": catalog})
    client = client_for(service)
    run = wait_run(client, start_run(client))
    assert run["state"] == "succeeded", run
    s = steps_by_id(run)
    # b and c both consume only a's artifact: they run at the same time
    assert s["b"]["started_at"] < s["c"]["finished_at"] and s["c"]["started_at"] < s["b"]["finished_at"]
    # ... and nothing starts before what it consumes has finished
    assert s["a"]["finished_at"] <= min(s["b"]["started_at"], s["c"]["started_at"])
    assert s["d"]["started_at"] >= max(s["b"]["finished_at"], s["c"]["finished_at"])
    # the upstream saw the same: c arrived before b was answered (and the reverse), d only after both were
    seen = {step_of(r): r.t_received for r in upstream.requests if r.route == "chat"}
    assert abs(seen["b"] - seen["c"]) < delay
    assert seen["d"] - max(seen["b"], seen["c"]) >= delay
    # 3 waves, not the 4 a fixed list would take
    assert run["totals"]["duration_ms"] < 4 * delay * 1000


def test_each_prompt_carries_exactly_its_consumed_artifacts(start_app, client_for, upstream, catalog):
    service = start_with_upstreams(start_app, [upstream], {"catalog_dir": catalog})
    client = client_for(service)
    run = wait_run(client, start_run(client, inputs={"idea": "IDEA-TEXT"}))
    assert run["state"] == "succeeded", run
    consumes = dict(DIAMOND)
    prompts = {step_of(r): r.json["messages"] for r in upstream.requests if r.route == "chat"}
    assert sorted(prompts) == ["a", "b", "c", "d"]
    for step, messages in prompts.items():
        system, user = messages[0], messages[1]
        assert system == {"role": "system", "content": f"You are test tool {step}. Write artifact {step}."}
        assert "### idea\nIDEA-TEXT" in user["content"]
        headed = {line[4:] for line in user["content"].splitlines() if line.startswith("### ")} - {"idea"}
        assert headed == set(consumes[step]), step
        for other in "abcd":
            body = f"Body of {other}."
            assert (body in user["content"]) == (f"art-{other}" in consumes[step]), (step, other)
    # the status block is parsed and kept with the step
    assert steps_by_id(run)["d"]["report"] == {"status": "complete", "assumptions": ["a1"], "open_questions": []}
    assert run["totals"]["prompt_tokens"] == 4 * 11 and run["totals"]["completion_tokens"] == 4 * 7


def test_model_per_tool_then_run_model(start_app, client_for, upstream, catalog):
    upstream.models = ["gpt-4o-mini", "cheap-model", "strong-model"]  # what its models list (health check) says
    service = start_with_upstreams(start_app, [upstream], {"catalog_dir": catalog,
                                                           "tools": {"t-b": {"model": "strong-model"}}})
    client = client_for(service)
    run = wait_run(client, start_run(client, model="cheap-model"))
    assert run["state"] == "succeeded", run
    models = {step_of(r): r.json["model"] for r in upstream.requests if r.route == "chat"}
    assert models == {"a": "cheap-model", "b": "strong-model", "c": "cheap-model", "d": "cheap-model"}


def test_failover_mid_run_keeps_the_run_going(start_app, client_for, catalog):
    with FakeUpstream("openai", api_key="sk-test") as primary, \
            FakeUpstream("openai", api_key="sk-test", reply=reply_for) as secondary:
        def primary_reply(rec):
            primary.fault("status", status=503)  # from now on the primary fails every call
            return reply_for(rec)
        primary.reply = primary_reply
        service = start_with_upstreams(start_app, [primary, secondary], {"catalog_dir": catalog})
        client = client_for(service)
        run = wait_run(client, start_run(client))
        assert run["state"] == "succeeded", run
        providers = {sid: step["provider"] for sid, step in steps_by_id(run).items()}
        assert providers == {"a": "fake0", "b": "fake1", "c": "fake1", "d": "fake1"}
        assert sorted(step_of(r) for r in secondary.requests if r.route == "chat") == ["b", "c", "d"]


def test_step_retried_then_run_fails_keeping_partial_artifacts(start_app, client_for, upstream, catalog):
    def reply(rec):
        upstream.fault("status", status=500)  # only the first call (step a) succeeds
        return reply_for(rec)
    upstream.reply = reply
    service = start_with_upstreams(start_app, [upstream], {"catalog_dir": catalog,
                                                           "workflows": {"max_parallel_steps": 1}})
    client = client_for(service)
    run = wait_run(client, start_run(client))
    assert run["state"] == "failed", run
    s = steps_by_id(run)
    assert s["a"]["state"] == "succeeded"
    assert s["b"]["state"] == "failed" and s["b"]["attempts"] == 2 and s["b"]["error"]
    assert s["c"]["state"] == "skipped" and s["d"]["state"] == "skipped"
    assert "'b'" in run["error"]
    assert [a["name"] for a in run["artifacts"]] == ["art-a"]
    assert client.get(f"/bmad/runs/{run['run_id']}/artifacts/art-a").status == 200
    assert client.get(f"/bmad/runs/{run['run_id']}/artifacts/art-b").status == 404
    calls = [step_of(r) for r in upstream.requests if r.route == "chat"]
    assert calls == ["a", "b", "b"]  # one retry (workflows.step_retries = 1), then c and d never ran


def test_cancel_while_queued_and_while_running(start_app, client_for, upstream, catalog):
    upstream.delay_seconds = 0.3
    service = start_with_upstreams(start_app, [upstream], {"catalog_dir": catalog, "workflows": {"workers": 1}})
    client = client_for(service)
    first = start_run(client)
    wait_chat(upstream, 1)  # step a of the first run is with the model
    second = start_run(client)
    assert client.get(f"/bmad/runs/{second}").json["run"]["state"] == "queued"

    resp = client.post(f"/bmad/runs/{second}/cancel")
    assert resp.status == 200 and resp.json["state"] == "cancelled"
    queued_run = client.get(f"/bmad/runs/{second}").json["run"]
    assert queued_run["state"] == "cancelled"
    assert {s["state"] for s in queued_run["steps"]} == {"skipped"}

    resp = client.post(f"/bmad/runs/{first}/cancel")
    assert resp.status == 202 and resp.json["cancel_requested"] is True
    run = wait_run(client, first)
    assert run["state"] == "cancelled"
    s = steps_by_id(run)
    assert s["a"]["state"] == "cancelled"  # the call in flight was aborted, not waited for
    assert run["artifacts"] == []
    assert {s[x]["state"] for x in "bcd"} == {"skipped"}
    assert [step_of(r) for r in upstream.requests if r.route == "chat"] == ["a"]
    assert client.post(f"/bmad/runs/{first}/cancel").status == 200  # cancelling again changes nothing
    assert client.post(f"/bmad/runs/{first}/approve").status == 409


def test_approval_gate_stops_the_run_until_approved(start_app, client_for, upstream, tmp_path):
    catalog = write_catalog(tmp_path / "gated", gate="d")
    service = start_with_upstreams(start_app, [upstream], {"catalog_dir": catalog})
    client = client_for(service)
    run_id = start_run(client, approvals=True)
    run = wait_run(client, run_id, until=lambda r: r["state"] == "waiting_approval")
    s = steps_by_id(run)
    assert [s[x]["state"] for x in "abcd"] == ["succeeded", "succeeded", "succeeded", "pending"]
    assert client.get(f"/bmad/runs/{run_id}?wait=0.2").json["run"]["state"] == "waiting_approval"

    resp = client.post(f"/bmad/runs/{run_id}/approve")
    assert resp.status == 202 and resp.json["approved_steps"] == ["d"]
    run = wait_run(client, run_id)
    assert run["state"] == "succeeded"
    assert client.post(f"/bmad/runs/{run_id}/approve").status == 409
    # without "approvals": true the gate is not a stop
    assert wait_run(client, start_run(client))["state"] == "succeeded"
    # a run waiting at a gate can be cancelled at once
    waiting = start_run(client, approvals=True)
    wait_run(client, waiting, until=lambda r: r["state"] == "waiting_approval")
    resp = client.post(f"/bmad/runs/{waiting}/cancel")
    assert resp.status == 200 and resp.json["state"] == "cancelled"
    assert steps_by_id(client.get(f"/bmad/runs/{waiting}").json["run"])["d"]["state"] == "skipped"


def test_queue_full_answers_503_with_retry_after(start_app, client_for, upstream, catalog):
    upstream.delay_seconds = 0.3
    service = start_with_upstreams(start_app, [upstream], {"catalog_dir": catalog,
                                                           "workflows": {"workers": 1, "queue_limit": 1}})
    client = client_for(service)
    running = start_run(client)
    wait_chat(upstream, 1)
    queued = start_run(client)
    resp = client.post("/bmad/workflows/diamond/runs", {"inputs": {"idea": "x"}})
    assert resp.status == 503 and resp.getheader("Retry-After") == "5"
    assert resp.json["error"]["type"] == "queue_full"
    health = client.get("/bmad/health").json["checks"]["workflows"]
    assert health["queued"] == 1 and health["running"] == 1
    for run_id in (queued, running):
        client.post(f"/bmad/runs/{run_id}/cancel")
    wait_run(client, running)


def test_a_failed_attempt_is_retried_and_the_run_goes_on(start_app, client_for, upstream, catalog):
    upstream.fault("status", times=1, status=500)  # the first call fails once
    service = start_with_upstreams(start_app, [upstream], {"catalog_dir": catalog})
    client = client_for(service)
    run = wait_run(client, start_run(client))
    assert run["state"] == "succeeded", run
    s = steps_by_id(run)
    assert s["a"]["attempts"] == 2 and [s[x]["attempts"] for x in "bcd"] == [1, 1, 1]
    assert sorted(step_of(r) for r in upstream.requests if r.route == "chat") == ["a", "a", "b", "c", "d"]


def test_at_most_workers_runs_execute_at_once(start_app, client_for, catalog):
    service = start_app({"catalog_dir": catalog, "workflows": {"workers": 2}})
    engine = service.app.workflows
    release = threading.Event()
    inner = engine.executor

    class Held:
        def execute(self, *args, **kw):
            release.wait(10)
            return inner.execute(*args, **kw)
    engine.executor = Held()
    client = client_for(service)
    ids = [start_run(client) for _ in range(3)]
    try:
        assert eventually(lambda: engine.stats()["running"] == 2)
        assert engine.stats()["queued"] == 1
        states = sorted(client.get(f"/bmad/runs/{run_id}").json["run"]["state"] for run_id in ids)
        assert states == ["queued", "running", "running"]
    finally:
        release.set()
    assert [wait_run(client, run_id)["state"] for run_id in ids] == ["succeeded"] * 3
