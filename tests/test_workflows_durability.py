"""Runs survive restarts: graceful ones in-process, and kill -9 of the real entrypoint."""

import http.client
import json
import signal
import sqlite3
from collections import Counter

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.proc import ServerProcess
from tests.workflow_support import (provider_config, reply_for, start_run, start_with_upstreams,
                                    step_of, wait_chat, wait_run, write_catalog)


@pytest.fixture
def upstream():
    with FakeUpstream("openai", api_key="sk-test", reply=reply_for) as up:
        yield up


def chat_calls(upstream, since=0):
    return Counter(step_of(r) for r in upstream.requests[since:] if r.route == "chat")


def test_runs_and_artifacts_survive_a_graceful_restart(start_app, client_for):
    service = start_app()
    client = client_for(service)
    run = wait_run(client, start_run(client, "greenfield-service"))
    prd = client.get(f"/bmad/runs/{run['run_id']}/artifacts/prd").body
    client.close()
    service.stop(drain_seconds=2)

    again = start_app()
    client = client_for(again)
    after = client.get(f"/bmad/runs/{run['run_id']}").json["run"]
    assert after == run
    assert client.get(f"/bmad/runs/{run['run_id']}/artifacts/prd").body == prd
    assert [r["run_id"] for r in client.get("/bmad/runs").json["runs"]] == [run["run_id"]]


def test_graceful_stop_finishes_running_steps_and_the_restart_resumes(start_app, client_for, upstream, tmp_path):
    catalog = write_catalog(tmp_path / "catalog")
    upstream.delay_seconds = 0.4
    service = start_with_upstreams(start_app, [upstream], {"catalog_dir": catalog})
    client = client_for(service)
    run_id = start_run(client)
    wait_chat(upstream, 3)  # a answered; b and c are with the model
    client.close()
    service.stop(drain_seconds=5)
    # b and c were allowed to finish; d was never started
    assert chat_calls(upstream) == {"a": 1, "b": 1, "c": 1}

    again = start_with_upstreams(start_app, [upstream], {"catalog_dir": catalog})
    client = client_for(again)
    run = wait_run(client, run_id)
    assert run["state"] == "succeeded", run
    assert chat_calls(upstream) == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert [s["state"] for s in run["steps"]] == ["succeeded"] * 4


def test_a_run_that_cannot_be_resumed_is_failed_as_interrupted(start_app, client_for, tmp_path):
    import threading
    catalog = write_catalog(tmp_path / "catalog")
    service = start_app({"catalog_dir": catalog, "workflows": {"workers": 1}, "server": {"drain_seconds": 0.2}})
    release = threading.Event()
    offline = service.app.workflows.executor

    class Hung:
        def execute(self, *args, **kw):
            release.wait(10)
            return offline.execute(*args, **kw)
    service.app.workflows.executor = Hung()
    client = client_for(service)
    running, queued = start_run(client), start_run(client)
    client.close()
    service.stop(drain_seconds=0.2)  # step a of the first run is still "with the model"
    try:
        # the catalog that defined the workflow's tools is gone at the next start
        again = start_app({"server": {"drain_seconds": 0.2}})
        client = client_for(again)
        for run_id in (running, queued):
            run = wait_run(client, run_id)
            assert run["state"] == "failed" and run["error"] == "interrupted", run
            assert {s["state"] for s in run["steps"]} == {"skipped"}
    finally:
        release.set()


def _post(port, path, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    return resp.status, data


def _get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=70)
    conn.request("GET", path)
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    return resp.status, data


@pytest.mark.slow
def test_kill_9_mid_run_then_restart_completes_without_repeating_succeeded_steps(upstream, tmp_path):
    catalog = write_catalog(tmp_path / "catalog")
    data_dir = tmp_path / "data"
    config = tmp_path / "config.json"
    config.write_text(json.dumps(dict(provider_config(upstream), log_level="info")))
    args = ("--config", str(config), "--port", "0", "--data-dir", str(data_dir), "--catalog-dir", catalog)
    upstream.delay_seconds = 1.0
    first = ServerProcess(*args)
    try:
        port = first.wait_port()
        status, body = _post(port, "/bmad/workflows/diamond/runs", {"inputs": {"idea": "durable"}})
        assert status == 202, body
        run_id = body["run_id"]
        wait_chat(upstream, 3)  # a answered and committed; b and c are in flight
        first.proc.kill()
        first.wait()
    finally:
        first.stop()
    before_restart = len(upstream.requests)
    db = sqlite3.connect(data_dir / "runs.db")
    done_before = {row[0] for row in db.execute(
        "SELECT step_id FROM steps WHERE run_id = ? AND state = 'succeeded'", (run_id,))}
    db.close()
    assert "a" in done_before and "d" not in done_before

    upstream.delay_seconds = 0.05
    second = ServerProcess(*args)
    try:
        port = second.wait_port()
        status, body = _get(port, f"/bmad/runs/{run_id}?wait=30")
        assert status == 200 and body["run"]["state"] == "succeeded", body
        assert [s["state"] for s in body["run"]["steps"]] == ["succeeded"] * 4
    finally:
        second.signal(signal.SIGTERM)
        second.wait()
    after = chat_calls(upstream, before_restart)
    # every step not yet succeeded at the kill was called exactly once more; none that had succeeded was repeated
    assert after == {step: 1 for step in "abcd" if step not in done_before}, (after, done_before)
