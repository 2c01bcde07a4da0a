"""Soak: mixed traffic against the real entrypoint, then the checks of issue 9.

``python -m benchmarks.soak [--requests 50000] [--concurrency 64] [--streams 200] [--hold-seconds 10]``

Starts a fast fake OpenAI upstream in its own process and ``bmad_api.py`` as
a subprocess (its own temp data dir, two API keys, rate limits raised so the
load is not all 429s -- the failed-key limit too, as every request comes
from 127.0.0.1 and the wrong keys would lock the good ones out), then:

1. drives ``--requests`` mixed requests from ``--concurrency`` keep-alive
   worker threads: health, catalog, chat completions (cache hits and misses),
   tool runs, analytics reports, run lists, workflow starts, metrics, unknown
   paths and a few wrong keys;
2. holds ``--streams`` streaming completions open for ``--hold-seconds``
   while two clients send normal requests, and measures their p99;
3. stops the gateway with SIGTERM and checks: no 5xx (the fake upstream is
   told to produce none), no connection reset, exit 0, every recorded
   request is an ``api_request`` row, RSS at the end within 20% of the level
   after the first 10%, the thread count back to its baseline,
   ``PRAGMA integrity_check`` ok on every database, no key in any log line,
   response, metric or analytics row.

Prints the figures; exit status 0 when every check passed. Bounded: the load
stops at ``--time-limit`` seconds even when the count is not reached.
``run(...)`` returns the same figures as a dict (the CI test uses it).
"""

import argparse
import http.client
import itertools
import json
import multiprocessing
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "soak-admin-key-6f1d0c2b9a"
USER_KEY = "soak-user-key-3e8a7b41c5"
WRONG_KEY = "soak-wrong-key-90d1e2f3a4"
UPSTREAM_KEY = "sk-soak-upstream-77aa55cc33"
QUERY_SECRET = "soak-query-secret-1b2c3d"
SECRETS = (ADMIN_KEY, USER_KEY, WRONG_KEY, UPSTREAM_KEY, QUERY_SECRET)
HIGH = {"per_minute": 10_000_000, "burst": 1_000_000}

COMPLETION = {"id": "chatcmpl-soak", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "A soak answer."},
                           "logprobs": None, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}}
MODELS = {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "soak"}]}


# -- the fake upstream (its own process, so its GIL is not the gateway's or the client's) -------------


def _chunk(delta, finish=None):
    event = {"id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    data = b"data: " + json.dumps(event).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _serve_connection(conn, hold_seconds):
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            length = int(m.group(1)) if m else 0
            while len(buf) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            body, buf = buf[:length], buf[length:]
            if head.startswith(b"GET"):
                payload = json.dumps(MODELS).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(payload), payload))
                continue
            request = json.loads(body or b"{}")
            if not request.get("stream"):
                payload = json.dumps(COMPLETION).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(payload), payload))
                continue
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            conn.sendall(_chunk({"role": "assistant", "content": ""}))
            held = "HOLD" in json.dumps(request.get("messages"))
            ends = time.monotonic() + (hold_seconds if held else 0)
            while True:
                conn.sendall(_chunk({"content": "drip "}))
                if time.monotonic() >= ends:
                    break
                time.sleep(0.5)
            conn.sendall(_chunk({}, "stop") + b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
    except (OSError, ValueError):
        return
    finally:
        conn.close()


def _upstream_main(pipe, hold_seconds):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    sock.settimeout(0.5)
    pipe.send(sock.getsockname()[1])
    while not pipe.poll():
        try:
            conn, _ = sock.accept()
        except socket.timeout:
            continue
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve_connection, args=(conn, hold_seconds), daemon=True).start()
    sock.close()


class Upstream:
    """The fake upstream in a child process; ``url`` is its OpenAI base URL."""

    def __init__(self, hold_seconds):
        self._pipe, child = multiprocessing.Pipe()
        self._process = multiprocessing.Process(target=_upstream_main, args=(child, hold_seconds), daemon=True)
        self._process.start()
        if not self._pipe.poll(30):
            raise RuntimeError("the fake upstream did not start")
        self.url = f"http://127.0.0.1:{self._pipe.recv()}/v1"

    def stop(self):
        self._pipe.send("stop")
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()


# -- the gateway: the real entrypoint as a subprocess -------------------------------------------------


def soak_config(data_dir, upstream_url):
    """The gateway config: two keys, one fast provider, every rate limit raised."""
    return {
        "server": {"host": "127.0.0.1", "port": 0, "max_connections": 512, "drain_seconds": 30.0},
        "data_dir": str(data_dir), "log_level": "info",
        "auth": {"api_keys": [{"key": ADMIN_KEY, "user": "soak-admin", "role": "admin"},
                              {"key": USER_KEY, "user": "soak-user"}]},
        "providers": [{"name": "fast", "type": "openai", "base_url": upstream_url, "api_key": UPSTREAM_KEY,
                       "timeout_seconds": 30.0, "max_connections": 300}],
        "routing": {"max_total_connections": 300},
        "health_checks": {"interval_seconds": 0.0},
        "rate_limits": {"api": HIGH, "provider": HIGH, "workflow": HIGH, "auth": HIGH},
        "workflows": {"queue_limit": 100_000},
    }


class Gateway:
    """``python bmad_api.py --config FILE`` with stderr in a file; ``port`` once it has started."""

    def __init__(self, workdir, upstream_url):
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "gateway.log"
        config_path = self.workdir / "config.json"
        config_path.write_text(json.dumps(soak_config(self.data_dir, upstream_url)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BMAD_", "OPENAI_", "ANTHROPIC_", "AZURE_"))}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bmad_api.py"), "--config", str(config_path)],
                                     cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self._log)
        self.pid = self.proc.pid
        self.port = self._wait_started()

    def _wait_started(self, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if '"msg": "started"' in line:
                    return json.loads(line)["port"]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("the gateway did not start:\n" + self.log_path.read_text(errors="replace"))

    def status(self, field):
        """A number from /proc/PID/status (``VmRSS`` in kB, ``Threads``)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def stop(self, seconds=60):
        """SIGTERM, then wait; returns the exit code (a kill after ``seconds`` gives a negative one)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(seconds)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


# -- traffic ------------------------------------------------------------------------------------------

# (kind, weight). Kinds whose route is open (health, metrics) are not recorded as api_request.
MIX = (("health", 14), ("tools", 8), ("tool", 8), ("workflows", 4), ("chat_hit", 20), ("chat_miss", 12),
       ("tool_run", 8), ("analytics_user", 5), ("analytics_overview", 2), ("runs", 4), ("workflow_start", 1),
       ("metrics", 2), ("not_found", 2), ("query_secret", 2), ("wrong_key", 1))
NOT_RECORDED = frozenset({"health", "metrics"})
TOOLS = ("analyst", "pm", "architect", "qa", "dev", "sm", "po", "ux-expert")


def _chat(content, stream=False):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def build_request(kind, rnd, serial):
    """``(method, path, body, key)`` for one request of ``kind``."""
    if kind == "health":
        return "GET", "/bmad/health", None, None
    if kind == "metrics":
        return "GET", "/bmad/metrics", None, None
    if kind == "tools":
        return "GET", "/bmad/tools", None, USER_KEY
    if kind == "tool":
        return "GET", f"/bmad/tools/{rnd.choice(TOOLS)}", None, USER_KEY
    if kind == "workflows":
        return "GET", "/bmad/workflows", None, USER_KEY
    if kind == "chat_hit":
        return "POST", "/v1/chat/completions", _chat(f"a frequent question number {rnd.randrange(20)}"), USER_KEY
    if kind == "chat_miss":
        return "POST", "/v1/chat/completions", _chat(f"a unique question {serial}"), USER_KEY
    if kind == "tool_run":
        idea = f"idea {rnd.randrange(50)}" if rnd.random() < 0.5 else f"unique idea {serial}"
        return "POST", "/bmad/tools/analyst/run", json.dumps({"input": idea}).encode(), USER_KEY
    if kind == "analytics_user":
        return "GET", "/bmad/analytics/user/soak-user", None, USER_KEY
    if kind == "analytics_overview":
        return "GET", "/bmad/analytics?days=1", None, ADMIN_KEY
    if kind == "runs":
        return "GET", "/bmad/runs?limit=20", None, USER_KEY
    if kind == "workflow_start":
        return ("POST", "/bmad/workflows/greenfield-service/runs",
                json.dumps({"inputs": {"idea": f"a soak idea {serial}"}}).encode(), USER_KEY)
    if kind == "not_found":
        return "GET", f"/bmad/tools/no-such-tool-{rnd.randrange(7)}", None, USER_KEY
    if kind == "query_secret":
        return "GET", f"/bmad/tools?api_key={QUERY_SECRET}", None, USER_KEY
    if kind == "wrong_key":
        return "GET", "/bmad/tools", None, WRONG_KEY
    raise ValueError(kind)


class Tally:
    """Thread-safe counts: statuses by kind, errors by cause, latencies, leaked secrets."""

    def __init__(self):
        self.lock = threading.Lock()
        self.statuses = {}
        self.errors = {}
        self.latencies = []
        self.served = 0
        self.recorded = 0
        self.secret_hits = 0

    def add(self, kind, status, seconds, body):
        leaked = any(s.encode() in body for s in SECRETS)
        with self.lock:
            self.served += 1
            if kind not in NOT_RECORDED:
                self.recorded += 1
            key = (kind, status)
            self.statuses[key] = self.statuses.get(key, 0) + 1
            self.latencies.append(seconds)
            self.secret_hits += leaked

    def error(self, cause):
        with self.lock:
            self.errors[cause] = self.errors.get(cause, 0) + 1

    def count(self, predicate):
        with self.lock:
            return sum(n for (kind, status), n in self.statuses.items() if predicate(kind, status))


def _cause(exc):
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
        return "connection_reset"
    if isinstance(exc, socket.timeout):
        return "timeout"
    return type(exc).__name__


def _send(conn, method, path, body, key):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def drive(port, tally, total, concurrency, seed, deadline, on_progress=None):
    """Send ``total`` mixed requests from ``concurrency`` keep-alive workers (stops at ``deadline``)."""
    kinds = [kind for kind, weight in MIX for _ in range(weight)]
    counter = itertools.count()

    def worker(n):
        rnd = random.Random(seed * 1000 + n)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while time.monotonic() < deadline:
                serial = next(counter)
                if serial >= total:
                    return
                if on_progress is not None:
                    on_progress(serial)
                kind = rnd.choice(kinds)
                method, path, body, key = build_request(kind, rnd, f"{seed}-{serial}")
                started = time.perf_counter()
                try:
                    status, payload = _send(conn, method, path, body, key)
                except (OSError, http.client.HTTPException) as e:
                    tally.error(_cause(e))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    continue
                tally.add(kind, status, time.perf_counter() - started, payload)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic() + 35))


def hold_streams(port, tally, streams, hold_seconds, deadline):
    """Hold ``streams`` streaming completions open while two clients send normal requests.

    Returns ``(normal_latencies, complete_streams)``.
    """
    opened = threading.Barrier(streams + 1, timeout=max(5.0, deadline - time.monotonic()))
    complete = []
    lock = threading.Lock()

    def stream(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=hold_seconds + 30)
        started = time.perf_counter()
        try:
            conn.request("POST", "/v1/chat/completions", body=_chat(f"HOLD stream {n}", stream=True),
                         headers={"Authorization": f"Bearer {USER_KEY}", "Content-Type": "application/json"})
            resp = conn.getresponse()
            first = resp.readline()
            try:
                opened.wait()
            except threading.BrokenBarrierError:
                pass
            rest = resp.read()
            body = first + rest
            tally.add("stream", resp.status, time.perf_counter() - started, body)
            if resp.status == 200 and body.rstrip().endswith(b"data: [DONE]"):
                with lock:
                    complete.append(n)
        except (OSError, http.client.HTTPException) as e:
            tally.error(_cause(e))
            try:
                opened.wait(0)
            except threading.BrokenBarrierError:
                pass
        finally:
            conn.close()

    threads = [threading.Thread(target=stream, args=(n,), daemon=True) for n in range(streams)]
    for t in threads:
        t.start()
    try:
        opened.wait()
    except threading.BrokenBarrierError:
        pass
    normal = []
    normal_lock = threading.Lock()
    # Normal traffic runs while the streams are held (they end hold_seconds after they started).
    stop_at = min(deadline, time.monotonic() + max(0.5, hold_seconds - 1.0))

    def normal_client(n):
        rnd = random.Random(9000 + n)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local = []
        try:
            while time.monotonic() < stop_at:
                kind = rnd.choice(("health", "tools", "tool", "workflows", "chat_hit"))
                method, path, body, key = build_request(kind, rnd, "held")
                started = time.perf_counter()
                try:
                    status, payload = _send(conn, method, path, body, key)
                except (OSError, http.client.HTTPException) as e:
                    tally.error(_cause(e))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    continue
                elapsed = time.perf_counter() - started
                tally.add(kind, status, elapsed, payload)
                local.append(elapsed)
                time.sleep(0.002)  # a paced client, not a saturating one
        finally:
            conn.close()
        with normal_lock:
            normal.extend(local)

    clients = [threading.Thread(target=normal_client, args=(n,), daemon=True) for n in range(2)]
    for t in clients:
        t.start()
    for t in clients + threads:
        t.join(max(1.0, deadline - time.monotonic() + hold_seconds + 35))
    return normal, len(complete)


# -- checks -------------------------------------------------------------------------------------------


def _quantile(values, q):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


def _wait_threads(gateway, baseline, seconds=20.0):
    deadline = time.monotonic() + seconds
    threads = gateway.status("Threads")
    while threads > baseline and time.monotonic() < deadline:
        time.sleep(0.2)
        threads = gateway.status("Threads")
    return threads


def _scan_databases(data_dir):
    integrity, leaks, rows = {}, 0, {}
    for path in sorted(Path(data_dir).glob("*.db")):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            integrity[path.name] = conn.execute("PRAGMA integrity_check").fetchone()[0]
            for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                for row in conn.execute(f'SELECT * FROM "{table}"'):
                    text = repr(row)
                    leaks += any(s in text for s in SECRETS)
            if path.name == "analytics.db":
                for etype, n in conn.execute("SELECT type, COUNT(*) FROM events GROUP BY type"):
                    rows[etype] = n
        finally:
            conn.close()
    return integrity, leaks, rows


def run(requests=50_000, concurrency=64, streams=200, hold_seconds=10.0, time_limit=900.0, seed=1, workdir=None):
    """Run the whole soak; returns a dict of figures with ``failures`` (a list of strings, empty on a pass)."""
    began = time.monotonic()
    deadline = began + time_limit
    upstream = Upstream(hold_seconds)
    tmp = tempfile.TemporaryDirectory(prefix="bmad-soak-") if workdir is None else None
    gateway = None
    try:
        gateway = Gateway(workdir or tmp.name, upstream.url)
        tally = Tally()
        # warm up each kind once on one connection, so lazily started threads exist before the baseline
        drive(gateway.port, tally, len(MIX) * 3, 1, seed + 100, deadline)
        time.sleep(0.5)
        figures = {"threads_baseline": gateway.status("Threads"), "rss_start_kb": gateway.status("VmRSS")}
        marks = {}
        mark_at = max(1, requests // 10)

        deciles = []

        def on_progress(serial):
            if serial % mark_at == 0:
                deciles.append(gateway.status("VmRSS"))
            if serial == mark_at:
                marks["rss_10pct_kb"] = gateway.status("VmRSS")

        warmed = len(tally.latencies)
        load_began = time.monotonic()
        drive(gateway.port, tally, requests, concurrency, seed, deadline, on_progress)
        load_seconds = time.monotonic() - load_began
        figures["rss_end_kb"] = gateway.status("VmRSS")
        figures["rss_10pct_kb"] = marks.get("rss_10pct_kb", figures["rss_start_kb"])
        figures["rss_by_tenth_kb"] = deciles
        figures["threads_after_load"] = gateway.status("Threads")
        main_latencies = tally.latencies[warmed:]
        figures.update(load_requests=len(main_latencies), load_seconds=round(load_seconds, 2),
                       load_rps=round(len(main_latencies) / load_seconds, 1) if load_seconds else 0.0,
                       load_p50_ms=round(_quantile(main_latencies, 0.50), 2),
                       load_p99_ms=round(_quantile(main_latencies, 0.99), 2))

        normal, complete = hold_streams(gateway.port, tally, streams, hold_seconds, deadline) if streams else ([], 0)
        figures.update(streams=streams, streams_complete=complete, held_normal_requests=len(normal),
                       held_normal_p50_ms=round(_quantile(normal, 0.50), 2),
                       held_normal_p99_ms=round(_quantile(normal, 0.99), 2))

        metrics = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
        metrics_text = _send(metrics, "GET", "/bmad/metrics", None, None)[1]
        metrics.close()
        figures["threads_end"] = _wait_threads(gateway, figures["threads_baseline"])
        figures["exit_code"] = gateway.stop()
        log_text = gateway.log_path.read_text(errors="replace")
        integrity, db_leaks, rows = _scan_databases(gateway.data_dir)
        figures.update(
            served=tally.served, recorded_expected=tally.recorded, api_request_rows=rows.get("api_request", 0),
            auth_failed_rows=rows.get("auth_failed", 0),
            errors=dict(tally.errors),
            status_5xx=tally.count(lambda kind, status: status >= 500),
            status_429=tally.count(lambda kind, status: status == 429),
            wrong_key=tally.count(lambda kind, status: kind == "wrong_key"),
            wrong_key_429=tally.count(lambda kind, status: kind == "wrong_key" and status == 429),
            non_2xx_by_kind={f"{kind} {status}": n for (kind, status), n in sorted(tally.statuses.items())
                             if status >= 300},
            by_status={str(s): tally.count(lambda kind, status, s=s: status == s)
                       for s in sorted({status for _, status in tally.statuses})},
            integrity=integrity,
            secret_leaks={"responses": tally.secret_hits, "databases": db_leaks,
                          "log": sum(s in log_text for s in SECRETS),
                          "metrics": sum(s.encode() in metrics_text for s in SECRETS)},
            log_lines=log_text.count("\n"), total_seconds=round(time.monotonic() - began, 1))
        db_kb = (gateway.data_dir / "analytics.db").stat().st_size // 1024
        figures.update(analytics_db_kb=db_kb, rss_growth_pct=round(100.0 * (figures["rss_end_kb"] /
                                                                             figures["rss_10pct_kb"] - 1), 1),
                       rss_limit_kb=int(figures["rss_10pct_kb"] * 1.2))
        figures["failures"] = _judge(figures)
        return figures
    finally:
        if gateway is not None and gateway.proc.poll() is None:
            gateway.stop(10)
        upstream.stop()
        if tmp is not None:
            tmp.cleanup()


def _judge(f):
    failures = []
    if f["status_5xx"]:
        failures.append(f"{f['status_5xx']} responses with a 5xx status")
    if f["errors"]:
        failures.append(f"client-side errors: {f['errors']}")
    unexpected_429 = f["status_429"] - f["wrong_key_429"]
    if unexpected_429:
        failures.append(f"{unexpected_429} requests refused with 429 (other than wrong keys)")
    if f["exit_code"] != 0:
        failures.append(f"the gateway exited with {f['exit_code']} after SIGTERM")
    if f["api_request_rows"] != f["recorded_expected"]:
        failures.append(f"api_request rows {f['api_request_rows']} != recorded requests served {f['recorded_expected']}")
    if f["rss_end_kb"] > f["rss_limit_kb"]:
        failures.append(f"RSS grew from {f['rss_10pct_kb']} kB (after 10%) to {f['rss_end_kb']} kB "
                        f"(limit {f['rss_limit_kb']} kB)")
    if f["threads_end"] > f["threads_baseline"]:
        failures.append(f"threads {f['threads_end']} did not return to the baseline {f['threads_baseline']}")
    bad = {name: result for name, result in f["integrity"].items() if result != "ok"}
    if bad:
        failures.append(f"integrity_check: {bad}")
    if any(f["secret_leaks"].values()):
        failures.append(f"secrets found: {f['secret_leaks']}")
    if f["streams"] and f["streams_complete"] != f["streams"]:
        failures.append(f"only {f['streams_complete']} of {f['streams']} held streams completed")
    if f["streams"] and not f["held_normal_p99_ms"] < 50.0:
        failures.append(f"normal p99 {f['held_normal_p99_ms']} ms while streams were held (target < 50 ms)")
    return failures


def main(argv=None):
    """Run the soak and print its figures; exit status 0 when every check passed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--requests", type=int, default=50_000)
    p.add_argument("-c", "--concurrency", type=int, default=64)
    p.add_argument("--streams", type=int, default=200, help="streaming completions held open (0: skip)")
    p.add_argument("--hold-seconds", type=float, default=10.0)
    p.add_argument("--time-limit", type=float, default=900.0, help="the load phase stops here at the latest")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = p.parse_args(argv)
    figures = run(args.requests, args.concurrency, args.streams, args.hold_seconds, args.time_limit, args.seed)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:24} {value}")
    print("PASS" if not figures["failures"] else "FAIL")
    return 0 if not figures["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
