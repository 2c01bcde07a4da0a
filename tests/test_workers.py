"""``server.workers``: worker processes on one port, supervised, drained together."""

import json
import os
import signal

import pytest
import requests

from tests.proc import ServerProcess, run_cli
from tests.support import eventually

def _started(proc):
    return {r["worker"]: r["pid"] for r in proc.records() if r.get("msg") == "worker started"}


def test_more_than_one_worker_without_per_process_state_is_refused_naming_the_settings(tmp_path):
    done = run_cli("--workers", "2", "--port", "0", "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert "server.workers is 2" in done.stderr
    assert "state.per_process" in done.stderr and "state.redis_url" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_count_below_one_is_a_config_error(tmp_path):
    done = run_cli("--workers", "0", "--data-dir", str(tmp_path))
    assert done.returncode == 2 and "server.workers" in done.stderr


@pytest.mark.slow
def test_workers_share_the_port_are_restarted_when_killed_and_drain_on_sigterm(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"state": {"per_process": True}}))
    proc = ServerProcess("--config", str(config), "--workers", "2", "--port", "0", "--data-dir", str(tmp_path / "data"))
    try:
        eventually(lambda: len([r for r in proc.records() if r.get("msg") == "started"]) == 2,
                   what="both workers to listen", timeout=20)
        port = proc.wait_port()
        served = set()

        def both_serve():
            # a fresh connection each time, so the kernel may pick either listening socket
            assert requests.get(f"http://127.0.0.1:{port}/bmad/health", timeout=5).status_code == 200
            served.update(r["worker"] for r in proc.records() if r.get("msg") == "request")
            return served == {1, 2}

        eventually(both_serve, what="requests answered by both workers", timeout=20, interval=0.02)
        dirs = {r["worker"]: r["data_dir"] for r in proc.records() if r.get("msg") == "started"}
        assert dirs == {1: str(tmp_path / "data" / "worker-1"), 2: str(tmp_path / "data" / "worker-2")}

        first = _started(proc)[1]
        os.kill(first, signal.SIGKILL)
        eventually(lambda: _started(proc)[1] != first, what="worker 1 to be started again", timeout=20)
        eventually(lambda: len([r for r in proc.records() if r.get("msg") == "started"]) == 3,
                   what="the new worker 1 to listen", timeout=20)
        for _ in range(6):
            assert requests.get(f"http://127.0.0.1:{port}/bmad/health", timeout=5).status_code == 200

        proc.signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0
        stopped = [r for r in proc.records() if r.get("msg") == "worker stopped"]
        assert sorted(r["worker"] for r in stopped) == [1, 2]
        assert all(r.get("exit_code") == 0 for r in stopped)
        exited = [r for r in proc.records() if r.get("msg") == "worker exited; restarting it"]
        assert len(exited) == 1 and exited[0]["signal"] == "SIGKILL"
    finally:
        proc.stop()
