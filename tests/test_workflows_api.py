"""The /bmad/runs API: shipped workflows offline, validation, visibility, listing, long-poll, limits, telemetry."""

import threading
import time

import pytest

from bmad.workflows.parse import status_block
from tests.workflow_support import start_run, wait_run

KEYS = {"auth": {"api_keys": [{"key": "k-alice", "user": "alice"}, {"key": "k-bob", "user": "bob"},
                              {"key": "k-root", "user": "root", "role": "admin"}]}}


def test_every_shipped_workflow_completes_on_the_offline_provider(start_app, client_for):
    service = start_app()
    client = client_for(service)
    workflows = client.get("/bmad/workflows").json["workflows"]
    assert len(workflows) >= 6
    started = {}
    for wf in workflows:
        inputs = {i["name"]: f"text for {i['name']}" for i in wf["inputs"] if i["required"]}
        started[wf["id"]] = start_run(client, wf["id"], inputs)
    for wf in workflows:
        run = wait_run(client, started[wf["id"]])
        assert run["state"] == "succeeded", (wf["id"], run)
        assert [s["state"] for s in run["steps"]] == ["succeeded"] * len(wf["steps"])
        assert {s["provider"] for s in run["steps"]} == {"offline"}
        assert sorted(a["name"] for a in run["artifacts"]) == sorted(s["produces"] for s in wf["steps"])
        for artifact in run["artifacts"]:
            resp = client.get(f"/bmad/runs/{run['run_id']}/artifacts/{artifact['name']}")
            assert resp.status == 200 and resp.getheader("Content-Type") == "text/markdown; charset=utf-8"
            assert len(resp.body.decode("utf-8")) == artifact["chars"] > 0
    assert any(s.get("gate") == "approval" for wf in workflows for s in wf["steps"])


def test_start_answers_202_with_location_and_the_run_shape(start_app, client_for):
    client = client_for(start_app())
    resp = client.post("/bmad/workflows/greenfield-service/runs",
                       {"inputs": {"idea": "a todo API"}, "title": "Todo", "model": "bmad-default"})
    assert resp.status == 202
    run_id = resp.json["run_id"]
    assert resp.json == {"status": "accepted", "run_id": run_id, "state": "queued",
                         "links": {"self": f"/bmad/runs/{run_id}"}}
    assert resp.getheader("Location") == f"/bmad/runs/{run_id}"
    run = wait_run(client, run_id)
    assert set(run) >= {"run_id", "workflow", "title", "user", "state", "created_at", "started_at", "finished_at",
                        "steps", "artifacts", "totals"}
    assert run["title"] == "Todo" and run["workflow"] == "greenfield-service"
    assert run["created_at"] <= run["started_at"] <= run["finished_at"]
    assert set(run["steps"][0]) >= {"id", "tool", "state", "provider", "model", "prompt_tokens", "completion_tokens",
                                    "cost_usd", "latency_ms", "attempts", "error"}
    assert set(run["artifacts"][0]) == {"name", "produced_by", "chars"}
    assert set(run["totals"]) == {"prompt_tokens", "completion_tokens", "cost_usd", "duration_ms",
                                  "approval_wait_ms"}


@pytest.mark.parametrize("body, status, needle", [
    ({"inputs": {}}, 400, "inputs.idea"),
    ({}, 400, "inputs.idea"),
    ({"inputs": {"idea": "x", "colour": "red"}}, 400, "inputs.colour"),
    ({"inputs": {"idea": 5}}, 400, "inputs.idea"),
    ({"inputs": "x"}, 400, "'inputs'"),
    ({"inputs": {"idea": "x"}, "speed": 1}, 400, "'speed'"),
    ({"inputs": {"idea": "x"}, "model": ""}, 400, "'model'"),
    ({"inputs": {"idea": "x"}, "approvals": "yes"}, 400, "'approvals'"),
])
def test_bad_start_requests_name_the_field(start_app, client_for, body, status, needle):
    client = client_for(start_app({"rate_limits": {"enabled": False}}))
    resp = client.post("/bmad/workflows/greenfield-service/runs", body)
    assert resp.status == status and needle in resp.json["error"]["message"], resp.json


def test_unknown_ids_are_404_and_bad_queries_400(start_app, client_for):
    client = client_for(start_app())
    assert client.post("/bmad/workflows/nope/runs", {"inputs": {}}).status == 404
    assert client.get("/bmad/runs/run_nope").status == 404
    assert client.get("/bmad/runs/run_nope/artifacts/prd").status == 404
    assert client.post("/bmad/runs/run_nope/cancel").status == 404
    assert client.post("/bmad/runs/run_nope/approve").status == 404
    for query, field in (("state=done", "state"), ("limit=0", "limit"), ("limit=x", "limit"), ("cursor=abc", "cursor")):
        resp = client.get(f"/bmad/runs?{query}")
        assert resp.status == 400 and f"'{field}'" in resp.json["error"]["message"]
    run_id = start_run(client, "greenfield-service")
    for wait in ("61", "-1", "soon"):
        resp = client.get(f"/bmad/runs/{run_id}?wait={wait}")
        assert resp.status == 400 and "'wait'" in resp.json["error"]["message"]
    wait_run(client, run_id)
    assert client.get(f"/bmad/runs/{run_id}/artifacts/nothing-here").status == 404


def test_users_cannot_read_each_others_runs(start_app, client_for):
    service = start_app(KEYS)
    alice = client_for(service, {"Authorization": "Bearer k-alice"})
    bob = client_for(service, {"Authorization": "Bearer k-bob"})
    root = client_for(service, {"Authorization": "Bearer k-root"})
    run_id = start_run(alice, "greenfield-service")
    run = wait_run(alice, run_id)
    assert run["user"] == "alice"
    for path in (f"/bmad/runs/{run_id}", f"/bmad/runs/{run_id}/artifacts/prd"):
        assert bob.get(path).status == 404
    assert bob.post(f"/bmad/runs/{run_id}/cancel").status == 404
    assert bob.post(f"/bmad/runs/{run_id}/approve").status == 404
    assert bob.get("/bmad/runs").json["runs"] == []
    assert bob.get("/bmad/runs?user=alice").status == 403
    assert [r["run_id"] for r in alice.get("/bmad/runs").json["runs"]] == [run_id]
    assert root.get(f"/bmad/runs/{run_id}/artifacts/prd").status == 200
    assert [r["run_id"] for r in root.get("/bmad/runs?user=alice").json["runs"]] == [run_id]
    assert root.get("/bmad/runs?user=bob").json["runs"] == []


def test_list_is_newest_first_filtered_and_paged(start_app, client_for):
    client = client_for(start_app())
    ids = [start_run(client, "greenfield-service") for _ in range(3)]
    ids.append(start_run(client, "story-cycle", {"prd": "p", "architecture": "a"}))
    for run_id in ids:
        wait_run(client, run_id)
    page = client.get("/bmad/runs?limit=3").json
    assert [r["run_id"] for r in page["runs"]] == ids[::-1][:3]
    rest = client.get(f"/bmad/runs?limit=3&cursor={page['next_cursor']}").json
    assert [r["run_id"] for r in rest["runs"]] == [ids[0]] and rest["next_cursor"] is None
    only = client.get("/bmad/runs?workflow=story-cycle&state=succeeded").json["runs"]
    assert [r["run_id"] for r in only] == [ids[3]]
    assert client.get("/bmad/runs?state=failed").json["runs"] == []


def test_long_poll_returns_when_the_run_finishes_not_at_the_deadline(start_app, client_for):
    service = start_app({"workflows": {"workers": 1}})
    client = client_for(service)
    engine = service.app.workflows
    gate = threading.Event()
    offline = engine.executor

    class Held:
        def execute(self, *args, **kw):
            gate.wait(10)
            return offline.execute(*args, **kw)
    engine.executor = Held()
    run_id = start_run(client, "greenfield-service")
    began = time.monotonic()
    threading.Timer(0.3, gate.set).start()
    run = client.get(f"/bmad/runs/{run_id}?wait=30").json["run"]
    assert run["state"] == "succeeded", run
    assert 0.3 <= time.monotonic() - began < 5  # answered when the run finished, long before the 30 s
    began = time.monotonic()
    assert client.get(f"/bmad/runs/{run_id}?wait=30").json["run"]["state"] == "succeeded"
    assert time.monotonic() - began < 1  # already final: no wait at all


def test_eleventh_start_in_a_minute_is_rate_limited(start_app, client_for):
    client = client_for(start_app())
    for _ in range(10):
        start_run(client, "greenfield-service")
    resp = client.post("/bmad/workflows/greenfield-service/runs", {"inputs": {"idea": "one too many"}})
    assert resp.status == 429 and int(resp.getheader("Retry-After")) >= 1
    assert resp.json["error"]["type"] == "rate_limited"


def test_metrics_events_and_health(start_app, client_for):
    recorded = []
    lock = threading.Lock()

    class Events:
        def record(self, type, **fields):
            with lock:
                recorded.append((type, fields))
    service = start_app(events=Events())
    client = client_for(service)
    run = wait_run(client, start_run(client, "greenfield-service"))
    text = client.get("/bmad/metrics").body.decode()
    assert 'bmad_workflow_runs_total{status="succeeded",workflow="greenfield-service"} 1' in text
    assert "bmad_workflow_runs_active 0" in text
    assert 'bmad_workflow_step_duration_seconds_count{tool="analyst",workflow="greenfield-service"} 1' in text
    health = client.get("/bmad/health").json["checks"]["workflows"]
    assert health["queued"] == 0 and health["running"] == 0
    with lock:
        types = [t for t, _ in recorded]
        steps = [f for t, f in recorded if t == "workflow_step_completed"]
        done = [f for t, f in recorded if t == "workflow_completed"]
    assert types[0] == "workflow_started" and types[-1] == "workflow_completed"
    assert len(steps) == len(run["steps"])
    assert set(steps[0]) >= {"workflow", "run_id", "step", "tool", "user_id", "status", "latency_ms", "provider",
                             "model", "prompt_tokens", "completion_tokens", "cost_usd"}
    assert steps[0]["status"] == "succeeded" and steps[0]["run_id"] == run["run_id"]
    assert done[0]["status"] == "succeeded" and done[0]["duration_ms"] >= 0


def test_status_block_parsing():
    block = '```json\n{"status": "blocked", "assumptions": ["x", 3], "open_questions": ["why?"]}\n```'
    assert status_block(f"# Doc\n\ntext\n\n{block}\n") == {"status": "blocked", "assumptions": ["x"],
                                                           "open_questions": ["why?"]}
    assert status_block("no block at all") is None
    assert status_block('```json\n{"status": "done"}\n```') is None
    assert status_block("```json\n{not json}\n```") is None
    assert status_block(None) is None
    two = '```json\n{"status": "partial"}\n```\n\nmore\n\n```json\n{"status": "complete"}\n```'
    assert status_block(two)["status"] == "complete"


@pytest.mark.parametrize("data, needle", [
    ({"workflows": {"workers": 0}}, "workflows.workers"),
    ({"workflows": {"max_parallel_steps": 0}}, "workflows.max_parallel_steps"),
    ({"tools": {"no-such-tool": {"model": "x"}}}, "tools.no-such-tool"),
    ({"tools": {"architect": {"model": ""}}}, "tools.architect.model"),
    ({"tools": {"architect": {"temperature": 1}}}, "tools.architect.temperature"),
])
def test_bad_workflow_config_is_refused_naming_the_key(make_config, data, needle):
    from bmad.app import build_app
    from bmad.errors import ConfigError
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        build_app(make_config(data), environ={})
