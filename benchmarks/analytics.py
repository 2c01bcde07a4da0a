"""Analytics benchmark: enqueue cost, writer throughput, and report latency on 1,000,000 events.

    python -m benchmarks.analytics [--events 1000000] [--days 90]

Targets (issue 5): enqueue < 20 us per event; writer >= 20,000 events/s;
with 1,000,000 events over 90 days, ``/bmad/analytics`` < 500 ms and each
per-user/workflow/provider report < 100 ms. Reports are timed over HTTP
against a real server on 127.0.0.1 whose data dir holds the generated
database (median of several runs).

The machine may be shared: besides wall-clock figures each measurement also
reports CPU time (``time.process_time`` for the enqueue loop and the writer's
drain, during which the only busy thread is the one measured; ``thread_time``
for in-process report calls), which is what the same work costs on an
otherwise idle core.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import tempfile
import time

from bmad.ops import allocator
from bmad.analytics.engine import Analytics
from bmad.analytics.recorder import Sessions
from bmad.analytics.rollup import Batch
from bmad.analytics.schema import normalize
from bmad.analytics.store import Store
from bmad.analytics.writer import INSERT_EVENTS
from bmad.app import build_app
from bmad.config import load
from bmad.ops.logs import JsonLogger
from bmad.service import Service

DAY = 86400.0
USERS = [f"user-{i:04d}" for i in range(1000)]
USER_WEIGHTS = [1.0 / (i + 1) ** 0.8 for i in range(len(USERS))]  # a few heavy users, a long tail
ROUTES = ["/bmad/tools", "/bmad/tools/{tool_id}/run", "/v1/chat/completions", "/bmad/workflows",
          "/bmad/workflows/{workflow_id}/runs", "/bmad/runs/{run_id}", "/bmad/analytics", "other"]
TOOLS = ["analyst", "pm", "architect", "po", "sm", "dev", "qa", "ux-expert"]
WORKFLOWS = ["greenfield-fullstack", "greenfield-service", "greenfield-ui", "brownfield-fullstack",
             "brownfield-service", "story-cycle"]
PROVIDERS = [("openai-primary", "gpt-4o-mini", 0.6), ("claude", "claude-3-5-haiku-latest", 0.3),
             ("azure", "gpt-4o", 0.1)]
TYPE_MIX = [("api_request", 60), ("provider_request", 15), ("tool_execution", 8), ("workflow_step_completed", 5),
            ("cache_hit", 5), ("workflow_started", 1), ("workflow_completed", 0.8), ("workflow_failed", 0.2),
            ("rate_limited", 1), ("provider_failure", 1), ("provider_failover", 0.5),
            ("circuit_state_changed", 0.05), ("auth_failed", 0.45)]
QUIET = JsonLogger("error")


def measure_enqueue(n=200_000):
    """Microseconds per ``record`` call with typical api_request fields (no writer running)."""
    engine_dir = tempfile.mkdtemp(prefix="bmad-bench-")
    try:
        engine = Analytics(os.path.join(engine_dir, "analytics.db"), clock=time.time, logger=QUIET,
                           queue_size=n * 2 + 10)
        record = engine.recorder.record
        users = random.Random(1).choices(USERS, USER_WEIGHTS, k=n)
        began, began_cpu = time.perf_counter(), time.process_time()
        for user in users:
            record("api_request", user_id=user, route="/bmad/tools", method="GET", status=200, latency_ms=1.25,
                   error_type=None)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - began_cpu
        engine.store.close()
        return elapsed / n * 1e6, cpu / n * 1e6
    finally:
        shutil.rmtree(engine_dir, ignore_errors=True)


def measure_writer(n=200_000):
    """Events per second the writer commits (queue pre-filled while paused, then drained)."""
    engine_dir = tempfile.mkdtemp(prefix="bmad-bench-")
    try:
        engine = Analytics(os.path.join(engine_dir, "analytics.db"), clock=time.time, logger=QUIET,
                           queue_size=n * 2 + 10).start()
        engine.pause_writer()
        rng = random.Random(2)
        for i in range(n):
            if i % 4:
                engine.recorder.record("api_request", user_id=rng.choice(USERS), route=rng.choice(ROUTES),
                                       method="GET", status=200, latency_ms=rng.random() * 50)
            else:
                provider, model, _ = rng.choice(PROVIDERS)
                engine.recorder.record("provider_request", provider=provider, model=model, status=200,
                                       latency_ms=rng.random() * 900, prompt_tokens=300, completion_tokens=200,
                                       cost_usd=0.0004, user_id=rng.choice(USERS))
        queued = engine.stats()["queue_depth"]
        before = engine.writer.written
        began, began_cpu = time.perf_counter(), time.process_time()
        engine.resume_writer()
        engine.flush(timeout=600)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - began_cpu
        written = engine.writer.written - before
        engine.close()
        return written / elapsed, written / cpu, queued, elapsed
    finally:
        shutil.rmtree(engine_dir, ignore_errors=True)


def _event(rng, type, ts, user):
    fields = {}
    if type == "api_request":
        status = rng.choices((200, 201, 400, 404, 429, 500), (85, 3, 3, 5, 2, 2))[0]
        fields = dict(user_id=user, route=rng.choice(ROUTES), method="GET", status=status,
                      latency_ms=rng.lognormvariate(2.0, 1.0),
                      error_type={400: "invalid_request", 404: "not_found", 429: "rate_limited",
                                  500: "internal_error"}.get(status))
    elif type in ("provider_request", "provider_failure", "provider_failover", "circuit_state_changed"):
        provider, model, _ = rng.choices(PROVIDERS, [p[2] for p in PROVIDERS])[0]
        if type == "provider_request":
            prompt, completion = rng.randint(50, 2000), rng.randint(20, 800)
            fields = dict(provider=provider, model=model, status=200, latency_ms=rng.lognormvariate(6.0, 0.6),
                          prompt_tokens=prompt, completion_tokens=completion,
                          cost_usd=(prompt * 0.15 + completion * 0.6) / 1e6, user_id=user)
        elif type == "provider_failure":
            fields = dict(provider=provider, error_type=rng.choice(("timeout", "upstream_5xx", "rate_limited")),
                          status=502, user_id=user)
        elif type == "provider_failover":
            fields = dict(from_provider=provider, to_provider="azure", model=model, user_id=user)
        else:
            fields = {"provider": provider, "from": "closed", "to": rng.choice(("open", "half_open", "closed"))}
    elif type == "tool_execution":
        fields = dict(tool=rng.choice(TOOLS), user_id=user, status=rng.choices(("success", "error"), (97, 3))[0],
                      latency_ms=rng.lognormvariate(6.5, 0.5), tokens=rng.randint(100, 3000), cost_usd=0.001)
    elif type.startswith("workflow"):
        fields = dict(workflow=rng.choice(WORKFLOWS), run_id=f"run-{rng.randrange(10**9)}", user_id=user)
        if type == "workflow_step_completed":
            fields.update(step=f"step-{rng.randint(1, 6)}", tool=rng.choice(TOOLS),
                          status=rng.choices(("succeeded", "failed"), (95, 5))[0],
                          latency_ms=rng.lognormvariate(7.5, 0.5), prompt_tokens=500, completion_tokens=300,
                          cost_usd=0.0003)
        elif type in ("workflow_completed", "workflow_failed"):
            fields.update(status="succeeded" if type == "workflow_completed" else "failed",
                          duration_ms=rng.lognormvariate(10.0, 0.5))
    elif type == "cache_hit":
        fields = dict(route="/v1/chat/completions", user_id=user)
    elif type == "rate_limited":
        fields = {"route": rng.choice(ROUTES), "client": "127.0.0.1", "class": "api"}
    elif type == "auth_failed":
        fields = dict(route=rng.choice(ROUTES), status=401, error_type="invalid_api_key")
    return normalize(type, ts, fields)


def generate(path, events, days, now, chunk=50_000):
    """Write ``events`` events spread over ``days`` days ending at ``now`` straight into the database."""
    store = Store.open(path)
    conn = store.write_conn
    rng = random.Random(3)
    types = rng.choices([t for t, _ in TYPE_MIX], [w for _, w in TYPE_MIX], k=events)
    users = rng.choices(USERS, USER_WEIGHTS, k=events)
    sessions = Sessions(1800.0)
    start = now - days * DAY + 60
    step = (days * DAY - 120) / events
    began = time.perf_counter()
    for offset in range(0, events, chunk):
        rows = []
        for i in range(offset, min(events, offset + chunk)):
            row = _event(rng, types[i], start + i * step, users[i])
            if row[2] is not None:  # user_id: the recorder's session assignment
                row[3], new_session = sessions.assign(row[2], row[0])
                if new_session:
                    rows.append(normalize("session_started", row[0], {"user_id": row[2], "session_id": row[3]}))
            rows.append(row)
        changes = Batch()
        changes.fold(rows)
        conn.execute("BEGIN IMMEDIATE")
        INSERT_EVENTS.run(conn, rows)
        changes.write(conn)
        conn.execute("COMMIT")
    conn.execute("ANALYZE")
    store.close()
    return time.perf_counter() - began


def time_get(port, path, runs):
    """Median and max milliseconds of ``runs`` GETs of ``path`` (after one warm-up)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    samples = []
    for i in range(runs + 1):
        began = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        elapsed = (time.perf_counter() - began) * 1000
        if resp.status != 200:
            raise SystemExit(f"GET {path} -> {resp.status}: {body[:300]!r}")
        if i:
            samples.append(elapsed)
    conn.close()
    return statistics.median(samples), max(samples), len(body)


def measure_reports(events, days, runs):
    data_dir = tempfile.mkdtemp(prefix="bmad-bench-")
    try:
        now = time.time()
        gen_seconds = generate(os.path.join(data_dir, "analytics.db"), events, days, now)
        config = load(environ={}, data={"server": {"host": "127.0.0.1", "port": 0}, "data_dir": data_dir,
                                        "log_level": "error", "rate_limits": {"enabled": False}})
        app = build_app(config, logger=QUIET, environ={})
        app.llm = type("Providers", (), {"provider_names": lambda self: {p[0] for p in PROVIDERS}})()
        service = Service(app).start()
        heavy_user = USERS[0]
        median_user = USERS[len(USERS) // 10]
        results = {}
        cpu = {}
        try:
            engine = app.analytics
            for label, call in [
                ("overview 30 days", lambda: engine.overview(30)),
                ("overview 90 days", lambda: engine.overview(90)),
                ("user, heaviest, 90 days", lambda: engine.user(heavy_user, 90)),
                ("workflow, 90 days", lambda: engine.workflow(WORKFLOWS[0], 90)),
                ("provider, busiest, 90 days", lambda: engine.provider("openai-primary", 90)),
            ]:
                call()
                samples = []
                for _ in range(runs):
                    began = time.thread_time()
                    call()
                    samples.append((time.thread_time() - began) * 1000)
                cpu[label] = statistics.median(samples)
            for label, path in [
                ("/bmad/analytics (30 days)", "/bmad/analytics"),
                ("/bmad/analytics?days=90", "/bmad/analytics?days=90"),
                ("user report, heaviest user (30 days)", f"/bmad/analytics/user/{heavy_user}"),
                ("user report, heaviest user (90 days)", f"/bmad/analytics/user/{heavy_user}?days=90"),
                ("user report, typical user (90 days)", f"/bmad/analytics/user/{median_user}?days=90"),
                ("workflow report (30 days)", f"/bmad/analytics/workflow/{WORKFLOWS[0]}"),
                ("workflow report (90 days)", f"/bmad/analytics/workflow/{WORKFLOWS[0]}?days=90"),
                ("provider report, busiest (30 days)", "/bmad/analytics/provider/openai-primary"),
                ("provider report, busiest (90 days)", "/bmad/analytics/provider/openai-primary?days=90"),
                ("/bmad/analytics/real-time", "/bmad/analytics/real-time"),
            ]:
                results[label] = time_get(service.port, path, runs)
        finally:
            service.stop(drain_seconds=2)
        return gen_seconds, results, cpu
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    allocator.limit_sqlite()  # the SQLite memory budget the service runs with (bmad/cli.py)
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    enqueue_us, enqueue_cpu_us = measure_enqueue()
    print(f"enqueue: {enqueue_us:.2f} us/event wall, {enqueue_cpu_us:.2f} us/event CPU (target < 20)", flush=True)
    rate, cpu_rate, queued, seconds = measure_writer()
    print(f"writer: {rate:,.0f} events/s wall, {cpu_rate:,.0f} events per CPU-second "
          f"({queued:,} queued events drained in {seconds:.2f} s; target >= 20,000)", flush=True)
    gen_seconds, reports, cpu = measure_reports(args.events, args.days, args.runs)
    print(f"generated {args.events:,} events over {args.days} days in {gen_seconds:.1f} s", flush=True)
    for label, (median, worst, size) in reports.items():
        target = 500 if label.startswith("/bmad/analytics") and "real-time" not in label else 100
        verdict = "ok" if median < target else "MISSED"
        print(f"  {label:42s} median {median:7.1f} ms  max {worst:7.1f} ms  ({size:,} bytes)  "
              f"target < {target} ms: {verdict}")
    print("report CPU time in process (median, thread_time):")
    for label, ms in cpu.items():
        print(f"  {label:42s} {ms:7.1f} ms CPU")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        print(json.dumps({"enqueue_us": enqueue_us, "enqueue_cpu_us": enqueue_cpu_us, "writer_events_per_s": rate,
                          "writer_events_per_cpu_s": cpu_rate, "reports_ms": {k: v[0] for k, v in reports.items()},
                          "reports_cpu_ms": cpu}))


if __name__ == "__main__":
    main()
