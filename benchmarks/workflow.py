"""Workflow engine overhead: a 7-step workflow on a local fake upstream answering in 50 ms.

``python -m benchmarks.workflow [--runs 5] [--delay 0.05]``

The workflow (written to a temporary catalog_dir) is
``s1 -> (s2, s3) -> s4 -> (s5, s6) -> s7``: seven calls, five on the critical
path. The gateway runs in-process with the real router in front of the fake
upstream (``tests/fakes/upstream.py``), analytics and metrics on, rate limits
off. For each run it measures the wall time from the start request to the
final state (long-poll) and compares it with

* the nominal critical path: 5 calls x the upstream delay, and
* the measured critical path: the longest dependency chain of the steps'
  own measured call latencies,

and prints the engine's overhead per step: (run time - measured critical
path) / steps on the critical path. Targets: total < 1.5x the critical path,
engine overhead < 5 ms per step.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bmad.app import build_app
from bmad.config import load
from bmad.service import Service
from tests.fakes.upstream import FakeUpstream
from tests.workflow_support import provider_config, reply_for, start_run, write_catalog

STEPS = [("s1", []), ("s2", ["art-s1"]), ("s3", ["art-s1"]), ("s4", ["art-s2", "art-s3"]),
         ("s5", ["art-s4"]), ("s6", ["art-s4"]), ("s7", ["art-s5", "art-s6"])]


class _Client:
    def __init__(self, port):
        import http.client
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=70)

    def request(self, method, path, body=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        resp = self.conn.getresponse()
        resp.body = resp.read()
        resp.json = json.loads(resp.body)
        return resp

    def post(self, path, body=None):
        return self.request("POST", path, body)

    def get(self, path):
        return self.request("GET", path)


def critical_path(steps_by_id, weight):
    """The heaviest dependency chain: ``(total weight, [step ids])``."""
    produced_by = {f"art-{sid}": sid for sid, _ in STEPS}
    best = {}
    for sid, consumes in STEPS:  # STEPS is in dependency order
        before = max((best[produced_by[a]] for a in consumes), default=(0.0, []), key=lambda b: b[0])
        best[sid] = (before[0] + weight(steps_by_id[sid]), before[1] + [sid])
    return max(best.values(), key=lambda b: b[0])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--delay", type=float, default=0.05, help="upstream seconds per call (default 0.05)")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bmad-bench-wf-"))
    catalog = write_catalog(tmp / "catalog", "seven", STEPS)
    with FakeUpstream("openai", api_key="sk-test", reply=reply_for, delay_seconds=args.delay) as up:
        data = dict(provider_config(up), server={"host": "127.0.0.1", "port": 0}, data_dir=str(tmp / "data"),
                    catalog_dir=catalog, log_level="warning", rate_limits={"enabled": False})
        service = Service(build_app(load(environ={}, data=data))).start()
        try:
            client = _Client(service.port)
            start_run(client, "seven")  # warm-up: connections, caches, first-use imports
            rows = []
            for _ in range(args.runs):
                began = time.perf_counter()
                run_id = start_run(client, "seven")
                run = client.get(f"/bmad/runs/{run_id}?wait=60").json["run"]
                wall_ms = (time.perf_counter() - began) * 1000
                assert run["state"] == "succeeded", run
                by_id = {s["id"]: s for s in run["steps"]}
                measured, path = critical_path(by_id, lambda s: s["latency_ms"])
                rows.append((wall_ms, run["totals"]["duration_ms"], measured, len(path),
                             statistics.mean(s["latency_ms"] for s in run["steps"])))
        finally:
            service.stop(drain_seconds=2)
    nominal = 5 * args.delay * 1000
    wall = statistics.median(r[0] for r in rows)
    engine = statistics.median(r[1] for r in rows)
    measured = statistics.median(r[2] for r in rows)
    per_step = statistics.median((r[0] - r[2]) / r[3] for r in rows)
    call = statistics.median(r[4] for r in rows)
    print(f"7-step workflow, {args.runs} runs, upstream {args.delay * 1000:.0f} ms per call (medians)")
    print(f"  client-observed run time (POST .. final state): {wall:8.1f} ms")
    print(f"  engine run time (started_at .. finished_at):    {engine:8.1f} ms")
    print(f"  sum of all 7 calls, if run one after another:   {7 * args.delay * 1000:8.1f} ms")
    print(f"  critical path, nominal (5 x {args.delay * 1000:.0f} ms):            {nominal:8.1f} ms")
    print(f"  critical path, measured step latencies:         {measured:8.1f} ms")
    print(f"  ratio run time / nominal critical path:         {wall / nominal:8.2f}x   (target < 1.5x)")
    print(f"  engine overhead per critical-path step:         {per_step:8.2f} ms  (target < 5 ms)")
    print(f"  mean step call latency (router + upstream):     {call:8.1f} ms")
    ok = wall / nominal < 1.5 and per_step < 5
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
