"""How a run ends: a cancel aborts the model call in flight, cancelled is its own outcome, approval waits are
not run time, the end is counted before it is visible, and conflict messages read as English."""

import json
import select
import socket
import threading
import time

import pytest

from tests.analytics_support import db_rows, settle
from tests.llm_support import EventLog
from tests.support import FakeClock, eventually
from tests.workflow_support import start_run, steps_by_id, wait_run, write_catalog

HOLD_SECONDS = 10.0


class HoldingUpstream:
    """An OpenAI-shaped server on 127.0.0.1 that answers the models list but holds every chat call.

    A held call waits (at most ``HOLD_SECONDS``) for the client to close the connection and records
    that it did (``closed``); only when the client never does, it answers after all.
    """

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.held = threading.Event()
        self.closed = threading.Event()
        self.chats = 0
        self.stopping = threading.Event()
        self.listener.settimeout(0.1)
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue  # a timeout, or the listener closed by stop()
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn):
        conn.settimeout(HOLD_SECONDS)
        with conn:
            buf = b""
            try:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, body = buf.split(b"\r\n\r\n", 1)
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                if head.startswith(b"GET"):
                    self._answer(conn, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]})
                    return
                self.chats += 1
                self.held.set()
                deadline = time.monotonic() + HOLD_SECONDS
                while time.monotonic() < deadline and not self.stopping.is_set():
                    readable, _, _ = select.select([conn], [], [], 0.05)
                    if readable and conn.recv(1) == b"":
                        self.closed.set()  # the caller hung up: a real provider stops generating here
                        return
                self._answer(conn, {"id": "chatcmpl-held", "object": "chat.completion", "created": 0,
                                    "model": "gpt-4o-mini", "usage": {"prompt_tokens": 5, "completion_tokens": 500,
                                                                       "total_tokens": 505},
                                    "choices": [{"index": 0, "finish_reason": "stop",
                                                 "message": {"role": "assistant", "content": "# Late\n\nanswer"}}]})
            except OSError:
                return

    @staticmethod
    def _answer(conn, obj):
        body = json.dumps(obj).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    def stop(self):
        self.stopping.set()
        self.threads[0].join(2)  # the accept loop ends within its 0.1 s timeout
        self.listener.close()
        for thread in self.threads[1:]:
            thread.join(2)


@pytest.fixture
def holding():
    up = HoldingUpstream()
    yield up
    up.stop()


def _providers(up):
    return {"providers": [{"name": "held", "type": "openai", "base_url": up.base_url, "api_key": "sk-test"}],
            "models": {"bmad-default": ["held/gpt-4o-mini"]}, "routing": {"strategy": "priority"}}


def test_cancel_aborts_the_model_call_in_flight(start_app, client_for, holding, tmp_path):
    catalog = write_catalog(tmp_path / "catalog")
    service = start_app(dict(_providers(holding), catalog_dir=catalog, workflows={"workers": 1, "step_retries": 2}))
    client = client_for(service)
    run_id = start_run(client)
    assert holding.held.wait(5), "step a never reached the model"
    began = time.monotonic()
    resp = client.post(f"/bmad/runs/{run_id}/cancel")
    assert resp.status == 202, resp.json
    assert holding.closed.wait(5), "the upstream connection stayed open after the cancel"
    run = wait_run(client, run_id, seconds=5)
    assert time.monotonic() - began < HOLD_SECONDS / 2  # not after the model would have answered
    assert run["state"] == "cancelled"
    steps = steps_by_id(run)
    assert steps["a"]["state"] == "cancelled" and "cancelled" in steps["a"]["error"]
    assert {steps[x]["state"] for x in "bcd"} == {"skipped"}
    assert run["artifacts"] == [] and run["totals"]["completion_tokens"] == 0
    assert holding.chats == 1  # neither retried nor failed over
    metrics = client.get("/bmad/metrics").body.decode()
    assert 'bmad_workflow_runs_total{status="cancelled",workflow="diamond"} 1' in metrics
    # a cancel is no fault of the provider: its circuit stays closed and it is still up
    provider = client.get("/bmad/providers").json["providers"][0]
    assert provider["circuit_state"] == "closed", provider


def test_a_cancel_before_the_call_sends_nothing(holding):
    from bmad.providers.cancel import Cancelled, CancelToken
    from bmad.providers.pool import ConnectionPool

    pool = ConnectionPool(4)
    host = pool.add_host("held", "http", "127.0.0.1", holding.port)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        host.request("POST", "/v1/chat/completions", b"{}", {"Content-Length": "2"}, cancel=token)
    assert holding.chats == 0 and pool.stats()["open"] == 0
    pool.close()


def _gated_service(start_app, tmp_path, clock=None):
    catalog = write_catalog(tmp_path / "gated", gate="d")
    return start_app({"catalog_dir": catalog, "rate_limits": {"enabled": False}}, clock=clock)


def test_cancelled_runs_are_their_own_outcome_not_failures(start_app, client_for, tmp_path):
    service = _gated_service(start_app, tmp_path)
    client = client_for(service)
    done = wait_run(client, start_run(client))
    assert done["state"] == "succeeded"
    for _ in range(2):
        run_id = start_run(client, approvals=True)
        wait_run(client, run_id, until=lambda run: run["state"] == "waiting_approval")
        assert client.post(f"/bmad/runs/{run_id}/cancel").json["state"] == "cancelled"
    settle(client, service)
    report = client.get("/bmad/analytics/workflow/diamond").json["workflow"]
    assert (report["executions"], report["completed"], report["failed"], report["cancelled"]) == (3, 1, 0, 2)
    assert report["success_rate"] == 1.0
    overview = client.get("/bmad/analytics").json["analytics"]["workflows"]
    assert (overview["completed"], overview["failed"], overview["cancelled"]) == (1, 0, 2)
    assert overview["success_rate"] == 1.0 and overview["by_workflow"][0]["cancelled"] == 2
    rows = db_rows(service, "SELECT error, error_type, outcome FROM events WHERE type = 'workflow_cancelled'")
    assert rows == [(0, None, "cancelled")] * 2  # recorded, but not as errors


def test_time_at_an_approval_gate_is_not_run_time(start_app, client_for, tmp_path):
    clock = FakeClock()
    service = _gated_service(start_app, tmp_path, clock)
    client = client_for(service)
    run_id = start_run(client, approvals=True)
    wait_run(client, run_id, until=lambda run: run["state"] == "waiting_approval")
    clock.tick(100)
    waiting = client.get(f"/bmad/runs/{run_id}").json["run"]["totals"]
    assert waiting["approval_wait_ms"] == 100_000.0 and waiting["duration_ms"] == 0.0
    assert client.post(f"/bmad/runs/{run_id}/approve").status == 202
    run = wait_run(client, run_id)
    assert run["state"] == "succeeded"
    assert run["totals"]["duration_ms"] == 0.0 and run["totals"]["approval_wait_ms"] == 100_000.0
    settle(client, service)
    report = client.get("/bmad/analytics/workflow/diamond").json["workflow"]
    assert report["avg_duration_ms"] == 0.0 and report["avg_approval_wait_ms"] == 100_000.0


def test_the_end_of_a_run_is_counted_before_its_final_state_is_visible(start_app, client_for, tmp_path):
    seen = []

    class Events(EventLog):
        store = None

        def record(self, type, **fields):
            if type in ("workflow_completed", "workflow_cancelled"):
                # What a ?wait poller would read at this moment: it must not be final yet.
                seen.append((type, self.store.owner(fields["run_id"])[1]))
    events = Events()
    catalog = write_catalog(tmp_path / "gated", gate="d")
    service = start_app({"catalog_dir": catalog, "rate_limits": {"enabled": False}}, events=events)
    events.store = service.app.workflows.store
    client = client_for(service)
    wait_run(client, start_run(client))
    gated = start_run(client, approvals=True)
    wait_run(client, gated, until=lambda run: run["state"] == "waiting_approval")
    client.post(f"/bmad/runs/{gated}/cancel")
    eventually(lambda: len(seen) == 2)
    assert seen == [("workflow_completed", "running"), ("workflow_cancelled", "waiting_approval")]


def test_conflict_messages_say_what_became_of_the_run(start_app, client_for, tmp_path):
    service = _gated_service(start_app, tmp_path)
    client = client_for(service)
    done = wait_run(client, start_run(client))["run_id"]
    resp = client.post(f"/bmad/runs/{done}/cancel")
    assert resp.status == 409
    assert resp.json["error"]["message"] == f"run '{done}' has succeeded and can no longer be cancelled"
    resp = client.post(f"/bmad/runs/{done}/approve")
    assert resp.json["error"]["message"] == f"run '{done}' is not waiting for approval: it has succeeded"
    gated = start_run(client, approvals=True)
    wait_run(client, gated, until=lambda run: run["state"] == "waiting_approval")
    client.post(f"/bmad/runs/{gated}/cancel")
    resp = client.post(f"/bmad/runs/{gated}/approve")
    assert resp.json["error"]["message"] == f"run '{gated}' is not waiting for approval: it was cancelled"


def test_a_long_poll_answers_once_the_run_waits_for_an_approval(start_app, client_for, tmp_path):
    service = _gated_service(start_app, tmp_path)
    client = client_for(service)
    run_id = start_run(client, approvals=True)
    began = time.monotonic()
    run = client.get(f"/bmad/runs/{run_id}?wait=30").json["run"]
    assert run["state"] == "waiting_approval"  # it will not change by itself: answer, do not hold the caller
    assert time.monotonic() - began < 10
