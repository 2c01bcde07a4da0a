"""SIGTERM through the real entrypoint: every answered request is in analytics.db after a graceful stop."""

import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support import poll

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 60  # under the default per-client rate limit


def _start(tmp_path, flush_interval=60.0):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"analytics": {"flush_interval_seconds": flush_interval, "batch_size": 100000}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BMAD_", "OPENAI_", "ANTHROPIC_", "AZURE_"))}
    data_dir = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "bmad_api.py", "--port", "0", "--data-dir", str(data_dir),
                             "--config", str(config)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def logged_port():
        line = proc.stderr.readline()
        if not line:
            raise EOFError
        match = re.search(rb'"port": (\d+)', line)
        return int(match.group(1)) if match else None

    try:
        port = poll(logged_port, timeout=20, interval=0)
    except EOFError:
        port = None
    if port is None:
        proc.kill()
        raise AssertionError("the service did not log its port")
    return proc, port, data_dir


def _count(db, sql):
    conn = sqlite3.connect(str(db))
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def _send(port, count):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(count):
        conn.request("GET", "/bmad/tools" if i % 2 else "/bmad/workflows", headers={"X-User-ID": f"user{i % 7}"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    conn.request("GET", "/bmad/health")  # not recorded; a barrier for the last request's observer
    conn.getresponse().read()
    conn.close()


def test_sigterm_flushes_every_request(tmp_path):
    # A long flush interval keeps every event in the queue until the shutdown flush.
    proc, port, data_dir = _start(tmp_path, flush_interval=60.0)
    try:
        _send(port, REQUESTS)
        db = data_dir / "analytics.db"
        assert _count(db, "SELECT COUNT(*) FROM events WHERE type = 'api_request'") == 0  # all still queued
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert _count(db, "SELECT COUNT(*) FROM events WHERE type = 'api_request'") == REQUESTS
    assert _count(db, "SELECT COUNT(DISTINCT user_id) FROM events WHERE type = 'api_request'") == 7
    assert _count(db, "SELECT SUM(events) FROM daily_rollup WHERE dim = 'all' AND type = 'api_request'") == REQUESTS
    assert _count(db, "PRAGMA integrity_check") == "ok"


def test_a_hard_kill_loses_nothing_older_than_the_flush_interval(tmp_path):
    proc, port, data_dir = _start(tmp_path, flush_interval=0.2)
    db = data_dir / "analytics.db"
    try:
        _send(port, 20)
        assert poll(lambda: _count(db, "SELECT COUNT(*) FROM events WHERE type = 'api_request'") >= 20,
                    timeout=5, interval=0.05), "events were not committed within the flush interval"
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert _count(db, "PRAGMA integrity_check") == "ok"
    assert _count(db, "SELECT COUNT(*) FROM events WHERE type = 'api_request'") == 20
