"""Faults: every upstream fault gives a clean answer in time, opens the circuit, recovers and leaves no
thread behind; kill -9 under writes leaves sound databases; SIGTERM under load answers everything; a disk
that fills up (a real 1 MiB tmpfs) costs analytics rows, never answers."""

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.llm_support import assert_no_secret, entry, gateway_config
from tests.proc import ServerProcess, run_cli
from tests.support import FakeClock, eventually

TIMEOUT = 0.5
MESSAGES = [{"role": "user", "content": "fault me"}]


def gateway_threads():
    """This process's threads that belong to the gateway (not the fake upstreams)."""
    return [t for t in threading.enumerate() if not t.name.startswith("fake-")]


def ask(port, stream=False):
    """POST one chat completion on a fresh connection; returns (status, headers, body, seconds)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, **({"stream": True} if stream else {})}
    started = time.monotonic()
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, dict(resp.getheaders()), payload, time.monotonic() - started
    finally:
        conn.close()


def assert_clean_error(status, headers, body, stream):
    """A 4xx/5xx OpenAI-shaped error, or (once a stream has started) a final SSE error event."""
    if stream and status == 200:
        text = body.decode()
        assert "[DONE]" not in text
        last = [block for block in text.split("\n\n") if block][-1]
        assert json.loads(last[len("data: "):])["error"]["type"] == "upstream_error"
        return
    assert status in (429, 502, 503, 504), body
    assert headers["Content-Type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["message"] and error["type"]


@pytest.mark.parametrize("fault, options, stream", [
    ("down", {}, False),
    ("hang", {"seconds": 3}, False),
    ("status", {"status": 500}, False),
    ("rate_limit", {"retry_after": 30}, False),
    ("reset", {}, False),
    ("reset_mid_stream", {"after": 2}, True),
    ("malformed", {}, False),
    ("truncated", {}, False),
    ("slow_stream", {"interval": 1.5}, True),
    ("huge", {"size": 300_000}, False),
], ids=["refused", "hang", "500-burst", "429-storm", "reset", "reset-mid-stream", "malformed", "truncated",
        "slow-drip", "huge"])
def test_upstream_fault_is_answered_in_time_opens_the_circuit_and_recovers(start_app, fault, options, stream):
    clock = FakeClock()
    with FakeUpstream("openai") as up:
        service = start_app(gateway_config(
            entry(up, "a", timeout_seconds=TIMEOUT, connect_timeout_seconds=TIMEOUT, max_response_bytes=100_000),
            circuit_breaker={"failure_threshold": 3, "recovery_seconds": 30}), clock=clock)
        baseline = len(gateway_threads())
        assert ask(service.port)[0] == 200
        up.fault(fault, **options)
        for _ in range(3):
            status, headers, body, seconds = ask(service.port, stream)
            assert seconds < TIMEOUT + 1.0, f"{fault}: answered after {seconds:.2f} s"
            assert_clean_error(status, headers, body, stream)
            assert_no_secret(service, body)
        if fault == "huge":
            assert status == 502 and "max_response_bytes" in json.loads(body)["error"]["message"]
        # The provider is now left alone: its circuit is open (or, for a 429, its Retry-After holds it out).
        reached = len([r for r in up.requests if r.route == "chat"])
        status, headers, body, seconds = ask(service.port, stream)
        assert status == 503 and seconds < 0.5 and "Retry-After" in headers
        assert len([r for r in up.requests if r.route == "chat"]) == reached
        if fault != "rate_limit":
            assert service.app.llm.breaker_states()["a"] == "open"
        up.clear_faults()
        clock.tick(31)
        status, _, body, _ = ask(service.port, stream)
        assert status == 200 and (not stream or body.rstrip().endswith(b"data: [DONE]"))
        assert service.app.llm.breaker_states()["a"] == "closed"
        eventually(lambda: len(gateway_threads()) <= baseline, timeout=5)


# -- the process ----------------------------------------------------------------------------------------


def integrity(data_dir):
    """``{database file: PRAGMA integrity_check}`` for every database in ``data_dir``."""
    out = {}
    for path in sorted(Path(data_dir).glob("*.db")):
        conn = sqlite3.connect(path)
        try:
            out[path.name] = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
    return out


def hammer(port, stop, counts, path="/bmad/tools/analyst/preview", body=b'{"input": "load"}'):
    """Send requests on one keep-alive connection until ``stop`` is set; counts outcomes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    fresh = True
    while not stop.is_set():
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            fresh = False
            counts[resp.status] = counts.get(resp.status, 0) + 1
            if resp.status == 503:
                return  # draining, Retry-After: 1 -- a polite client waits; the server is gone by then
            if resp.getheader("Connection") == "close":
                conn.close()
                fresh = True
        except ConnectionRefusedError:
            counts["refused"] = counts.get("refused", 0) + 1  # the listener is gone: never accepted
            return
        except (OSError, http.client.HTTPException) as e:
            # On a new connection: the kernel completed the handshake as the listener closed (never accepted).
            cause = "reset_unaccepted" if fresh else type(e).__name__
            counts[cause] = counts.get(cause, 0) + 1
            conn.close()
            return


@pytest.fixture
def upstream():
    with FakeUpstream("openai") as up:
        yield up


@pytest.mark.slow
def test_kill_9_under_analytics_writes_and_workflow_runs_leaves_sound_databases(tmp_path, upstream):
    data_dir = tmp_path / "data"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "providers": [entry(upstream, "a")], "health_checks": {"interval_seconds": 0},
        "rate_limits": {"enabled": False}, "cache": {"enabled": False}}))
    upstream.delay_seconds = 0.05  # steps are in flight when the kill lands
    p = ServerProcess("--port", "0", "--data-dir", str(data_dir), "--config", str(config))
    try:
        port = p.wait_port()
        stop, counts = threading.Event(), {}
        workers = [threading.Thread(target=hammer, args=(port, stop, counts)) for _ in range(6)]
        workers.append(threading.Thread(target=hammer, args=(port, stop, counts, "/bmad/workflows/greenfield-service/runs",
                                                             b'{"inputs": {"idea": "a run to interrupt"}}')))
        for t in workers:
            t.start()
        eventually(lambda: counts.get(200, 0) > 2000 and counts.get(202, 0) > 10, timeout=20)
        p.proc.kill()  # SIGKILL: no drain, no flush
        assert p.wait() == -signal.SIGKILL
        stop.set()
        for t in workers:
            t.join(10)
    finally:
        p.stop()
    assert integrity(data_dir) == {"analytics.db": "ok", "runs.db": "ok"}
    restarted = ServerProcess("--port", "0", "--data-dir", str(data_dir), "--config", str(config))
    try:
        port = restarted.wait_port()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def runs():
            conn.request("GET", "/bmad/runs?limit=100")
            return json.loads(conn.getresponse().read())["runs"]

        # Runs resume (or are failed as interrupted): none stays queued or running for good.
        eventually(lambda: all(r["state"] not in ("queued", "running") for r in runs()), timeout=20)
        conn.request("GET", "/bmad/health")
        health = json.loads(conn.getresponse().read())
        assert health["checks"]["analytics"]["writer_alive"] and health["checks"]["workflows"]["status"] == "ok"
        conn.close()
    finally:
        restarted.stop()
    assert restarted.wait() == 0
    assert integrity(data_dir) == {"analytics.db": "ok", "runs.db": "ok"}


@pytest.mark.slow
def test_sigterm_under_load_answers_every_accepted_request_and_exits_0(tmp_path):
    data_dir = tmp_path / "data"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"rate_limits": {"enabled": False}}))
    p = ServerProcess("--port", "0", "--data-dir", str(data_dir), "--config", str(config))
    stop, counts = threading.Event(), {}
    try:
        port = p.wait_port()
        workers = [threading.Thread(target=hammer, args=(port, stop, counts)) for _ in range(16)]
        for t in workers:
            t.start()
        eventually(lambda: counts.get(200, 0) > 500, timeout=15)
        p.signal(signal.SIGTERM)
        assert p.wait(30) == 0
        stop.set()
        for t in workers:
            t.join(10)
    finally:
        stop.set()
        p.stop()
    # Every request the server read got its whole answer (200, or 503 draining with Connection: close): the
    # client completed exactly as many responses as the server logged, and the drain finished. What else the
    # clients saw is a request the server never read: refused, or reset/closed before a byte of an answer
    # (a connection the kernel completed as the listener closed; a keep-alive connection closed idle as
    # the request was on its way, which RFC 9112 section 9.3.1 lets a client retry).
    assert set(counts) <= {200, 503, "refused", "reset_unaccepted", "BrokenPipeError", "ConnectionResetError",
                           "RemoteDisconnected"}, counts
    served = counts.get(200, 0) + counts.get(503, 0)
    logged = [r for r in p.records() if r.get("msg") == "request"]
    assert len(logged) == served and {r["status"] for r in logged} <= {200, 503}, (counts, len(logged))
    assert [r["drained"] for r in p.records() if r.get("msg") == "stopped"] == [True]
    conn = sqlite3.connect(data_dir / "analytics.db")
    try:
        rows = conn.execute("SELECT COUNT(*) FROM events WHERE type = 'api_request'").fetchone()[0]
    finally:
        conn.close()
    assert rows == served  # the queue was flushed before exit


# -- storage ---------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (needs root); unmounted afterwards."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(directory):
    """Write a filler file until the file system is full; returns its path."""
    filler = directory / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_at_start_is_one_clear_line_and_a_non_zero_exit(tiny_disk):
    fill(tiny_disk)
    done = run_cli("--port", "0", "--data-dir", str(tiny_disk / "data"))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "data" in lines[0] and "Traceback" not in done.stderr, done.stderr


def test_a_disk_that_fills_while_running_costs_rows_not_answers(start_app, client_for, tiny_disk):
    service = start_app({"data_dir": str(tiny_disk / "data"), "rate_limits": {"enabled": False}})
    client = client_for(service)
    assert client.get("/bmad/tools").status == 200
    assert service.app.analytics.flush()
    filler = fill(tiny_disk)
    try:
        for i in range(200):
            assert client.post("/bmad/tools/analyst/preview", {"input": f"idea {i} " + "x" * 2000}).status == 200
        assert service.app.analytics.flush()
        health = client.get("/bmad/health")
        assert health.status == 200
        analytics = health.json["checks"]["analytics"]
        assert analytics["status"] == "degraded" and analytics["dropped_by_reason"]["write_error"] > 0
        metrics = client.get("/bmad/metrics").body.decode()
        assert 'bmad_analytics_events_dropped_total{reason="write_error"} 0.0' not in metrics
    finally:
        filler.unlink()
    client.get("/bmad/tools")
    assert service.app.analytics.flush()
    assert eventually(lambda: client.get("/bmad/health").json["checks"]["analytics"]["status"] == "ok")
