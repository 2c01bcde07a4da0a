"""The speed targets of issue 4: the gateway against the machine's limit, a minimal proxy and (optionally) LiteLLM.

``python -m benchmarks.gateway [--duration 3] [--rounds 3] [--peer litellm] [--loader auto|wrk|python]``
(or ``benchmarks/run.sh``).

What runs, each in its own process, all on 127.0.0.1:

* the upstream: nginx (Debian ``nginx-light``) answering every request with
  one fixed ``chat.completion`` (``return 200 '<json>'``), or the raw-socket
  Python ``FastUpstream`` of ``gateway_overhead`` when nginx is absent;
* the SSE upstream: the test suite's ``FakeUpstream`` (for streaming TTFB);
* gateway "miss": ``python bmad_api.py`` with every feature on (API keys,
  rate limits raised out of the way, analytics, metrics, JSON logs to
  /dev/null, routing with two providers) and the response cache disabled;
* gateway "hit": the same with the cache enabled (default size, 2,000);
* the baseline: ``benchmarks/minimal_proxy.py`` (ThreadingHTTPServer and
  pooled ``http.client``);
* with ``--peer litellm``: the LiteLLM proxy (1 worker) on the same upstream.

Load comes from ``wrk`` (a Lua script sets the POST body and the
Authorization header), or ``benchmarks/loadgen.py`` when wrk is absent.
Every cell (target x concurrency 1 and 16) runs ``--rounds`` times,
interleaved, after a one-second warm-up; the table shows the median round.
Then: streaming time to first byte direct vs through the gateway (raw
sockets, keep-alive, median of ``--ttfb-requests``), and the resident set
of the cache-hit gateway after 2,000 distinct requests filled its cache.

Exit status 0 when every target is met, 1 when one is missed, 2 when the
benchmark could not run. Ratios on a shared or busy machine are noisy:
repeat the run.
"""

import argparse
import http.client
import json
import math
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import urlsplit

from benchmarks.gateway_overhead import BODY, COMPLETION, _serve_upstream, _spawn
from benchmarks.loadgen import run as python_load

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = "/v1/chat/completions"
STREAM_BODY = json.dumps({"model": "fake-sse", "stream": True, "messages": [
    {"role": "user", "content": "Stream something short."}]}).encode()
CACHE_ENTRIES = 2000
START_TIMEOUT = 60.0
LITELLM_START_TIMEOUT = 180.0
LITELLM_KEY = "sk-" + secrets.token_hex(32)

# name: (target, comparison, limit, what); checked by targets()
TARGETS = (
    ("miss_vs_minimal_c16", ">=", 0.6, "cache-miss req/s at c16 / minimal proxy's"),
    ("overhead_c1_ms", "<=", 0.8, "gateway p50 - direct p50 at c1 (ms)"),
    ("hit_vs_health_c16", ">=", 0.8, "cache-hit req/s at c16 / /bmad/health's"),
    ("health_p50_c1_ms", "<=", 0.35, "/bmad/health p50 at c1 (ms)"),
    ("ttfb_added_ms", "<=", 1.0, "streaming TTFB through the gateway - direct (ms)"),
    ("rss_mib", "<=", 60.0, f"gateway RSS with the cache full ({CACHE_ENTRIES} entries, MiB)"),
    ("miss_vs_litellm_c16", ">=", 15.0, "cache-miss req/s at c16 / LiteLLM's"),
)


# -- processes --------------------------------------------------------------------------------

def free_port():
    """A port nobody listens on right now (bound, read and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, deadline_seconds, process=None, headers=None):
    """Poll ``url`` until it answers 200 (raises RuntimeError after ``deadline_seconds`` or if ``process`` dies)."""
    parts = urlsplit(url)
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with status {process.returncode}")
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
            conn.request("GET", parts.path or "/", headers=headers or {})
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {deadline_seconds:.0f}s")


class Processes:
    """Every child process and temporary directory of a run; ``close()`` ends them all."""

    def __init__(self):
        self.popens = []
        self.spawned = []  # (multiprocessing process, pipe)
        self.tmp = tempfile.mkdtemp(prefix="bmad-bench-")

    def popen(self, args, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        process = subprocess.Popen(args, **kw)
        self.popens.append(process)
        return process

    def spawn(self, target, *args):
        process, pipe, hello = _spawn(target, *args)
        self.spawned.append((process, pipe))
        return hello

    def close(self):
        for process in reversed(self.popens):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.popens):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for process, pipe in self.spawned:
            try:
                pipe.send("stop")
            except OSError:
                pass
            process.join(5)
            if process.is_alive():
                process.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def nginx_conf(port, tmp, body):
    """An nginx.conf answering every request on 127.0.0.1:``port`` with ``body`` (JSON)."""
    quoted = body.decode().replace("\\", "\\\\").replace("'", "\\'")
    temp = "\n".join(f"    {name}_temp_path {tmp}/{name};" for name in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location / {{
            default_type application/json;
            return 200 '{quoted}';
        }}
    }}
}}
"""


def start_upstream(procs, use_nginx):
    """The fast upstream's origin and what it is: nginx when there, else the Python one."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if use_nginx and nginx:
        port = free_port()
        tmp = os.path.join(procs.tmp, "nginx")
        os.makedirs(tmp)
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(nginx_conf(port, tmp, COMPLETION))
        process = procs.popen([nginx, "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "error.log")])
        origin = f"http://127.0.0.1:{port}"
        wait_http(origin + "/v1/models", 20, process)
        return origin, "nginx (1 worker)"
    port = procs.spawn(_serve_upstream)
    why = "nginx not found" if use_nginx else "--upstream python"
    return f"http://127.0.0.1:{port}", f"Python FastUpstream ({why})"


def _serve_sse_upstream(conn):
    sys.path.insert(0, REPO)
    from tests.fakes.upstream import FakeUpstream
    upstream = FakeUpstream("openai", reply="A short streamed answer from the fake upstream.").start()
    conn.send(upstream.port)
    conn.recv()
    upstream.stop()


def gateway_config(procs, name, origin, sse_origin, cache):
    """Write the gateway's config file: every feature on, limits raised, the cache on or off."""
    data_dir = os.path.join(procs.tmp, f"data-{name}")
    unlimited = {"per_minute": 100_000_000, "burst": 10_000_000}
    config = {
        "data_dir": data_dir, "log_level": "info",
        "auth": {"api_keys": [{"key": KEY, "user": "bench"}]},
        "providers": [
            {"name": "fast", "type": "openai", "base_url": origin + "/v1", "api_key": "sk-bench",
             "models": ["gpt-4o-mini"]},
            {"name": "sse", "type": "openai", "base_url": sse_origin + "/v1", "api_key": "sk-bench",
             "models": ["fake-sse"]}],
        "health_checks": {"interval_seconds": 0},  # nginx answers every path with the completion
        "cache": {"enabled": cache, "max_entries": CACHE_ENTRIES},
        "rate_limits": {"enabled": True, "api": unlimited, "provider": unlimited, "workflow": unlimited},
        "analytics": {"enabled": True},
    }
    path = os.path.join(procs.tmp, f"gateway-{name}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return path


def start_gateway(procs, name, origin, sse_origin, cache):
    """``python bmad_api.py`` (the real entrypoint) on a free port; returns (origin, Popen)."""
    config = gateway_config(procs, name, origin, sse_origin, cache)
    port = free_port()
    process = procs.popen([sys.executable, os.path.join(REPO, "bmad_api.py"), "--config", config,
                           "--port", str(port)], cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/bmad/health", START_TIMEOUT, process)
    return url, process


def start_minimal_proxy(procs, origin):
    port = free_port()
    process = procs.popen([sys.executable, "-m", "benchmarks.minimal_proxy", origin, "--port", str(port)], cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/v1/models", START_TIMEOUT, process)
    return url, process


def find_litellm(given):
    for candidate in (given, "/tmp/litellm-venv/bin/litellm", shutil.which("litellm")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def start_litellm(procs, executable, origin):
    """The LiteLLM proxy, 1 worker, one model on the same upstream; returns its origin."""
    port = free_port()
    config = os.path.join(procs.tmp, "litellm.yaml")
    with open(config, "w") as f:
        f.write("model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n"
                f"      model: openai/gpt-4o-mini\n      api_base: {origin}/v1\n      api_key: sk-bench\n"
                "litellm_settings:\n  telemetry: false\n"
                f"general_settings:\n  master_key: {LITELLM_KEY}\n")  # auth on, as on the gateway
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", NO_DOCS="True",
               DISABLE_ADMIN_UI="True", LITELLM_TELEMETRY="False")
    process = procs.popen([executable, "--config", config, "--host", "127.0.0.1", "--port", str(port),
                           "--num_workers", "1"], env=env, cwd=procs.tmp,
                          stderr=open(os.path.join(procs.tmp, "litellm.log"), "w"))
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health/liveliness", LITELLM_START_TIMEOUT, process)
    return url, process


# -- load -------------------------------------------------------------------------------------

WRK_SCRIPT = """
wrk.method = "%(method)s"
%(body)s
%(headers)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def lua_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class Loader:
    """Drives one URL at one concurrency for a while: wrk when present, else ``benchmarks.loadgen``."""

    def __init__(self, kind, tmp):
        self.wrk = shutil.which("wrk") if kind in ("auto", "wrk") else None
        if kind == "wrk" and not self.wrk:
            raise RuntimeError("--loader wrk: wrk is not installed (apt-get install wrk)")
        self.tmp = tmp
        self.scripts = {}
        self.name = "wrk (1 thread)" if self.wrk else "benchmarks/loadgen.py (Python threads)"

    def _script(self, method, body, headers):
        key = (method, body, tuple(sorted(headers.items())))
        if key not in self.scripts:
            path = os.path.join(self.tmp, f"load-{len(self.scripts)}.lua")
            lines = [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()]
            with open(path, "w") as f:
                f.write(WRK_SCRIPT % {"method": method, "headers": "\n".join(lines),
                                      "body": f"wrk.body = {lua_string(body.decode())}" if body else ""})
            self.scripts[key] = path
        return self.scripts[key]

    def run(self, url, concurrency, seconds, body=None, headers=None):
        """dict(rps, p50_ms, p99_ms, errors, count) of ``seconds`` of load."""
        headers = dict(headers or {})
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        if self.wrk:
            script = self._script("POST" if body is not None else "GET", body, headers)
            out = subprocess.run([self.wrk, "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "10s",
                                  "-s", script, url], capture_output=True, text=True, timeout=seconds + 60)
            line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH ")), None)
            if line is None:
                raise RuntimeError(f"wrk printed no result for {url}: {out.stdout[-300:]} {out.stderr[-300:]}")
            count, duration_us, errors, p50_us, p99_us = (int(x) for x in line.split()[1:])
            return {"rps": count / (duration_us / 1e6), "p50_ms": p50_us / 1000.0, "p99_ms": p99_us / 1000.0,
                    "errors": errors, "count": count}
        # The Python generator is bounded by a count: aim at ``seconds`` from a short probe's rate.
        probe = python_load(url, concurrency, 200, body, headers, warmup=0, time_limit=seconds)
        wanted = int(max(probe["rps"], 50) * seconds)
        return python_load(url, concurrency, wanted, body, headers, warmup=0, time_limit=seconds * 2)


def ttfb_samples(origin, path, body, headers, count, time_limit=60.0):
    """Times (ms) from sending a streamed request to the first SSE ``data:`` byte, on one keep-alive connection."""
    parts = urlsplit(origin)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nContent-Type: application/json\r\n"
               f"{head}Content-Length: {len(body)}\r\n\r\n").encode() + body
    samples = []
    deadline = time.monotonic() + time_limit
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            buf = b""
            first = None
            t0 = time.perf_counter()
            sock.sendall(request)
            while not buf.endswith(b"\r\n0\r\n\r\n"):  # the last chunk of a chunked SSE response
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError(f"{origin}{path}: the connection closed mid-stream")
                buf += data
                if first is None and b"data:" in buf:
                    first = time.perf_counter()
            if not buf.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{origin}{path}: {buf[:200]!r}")
            samples.append((first - t0) * 1000.0)
    finally:
        sock.close()
    return samples


def fill_cache(origin, count, concurrency=4, time_limit=120.0):
    """Send ``count`` distinct cacheable completions; returns how many got 200."""
    parts = urlsplit(origin)
    next_index = iter(range(count))
    lock = threading.Lock()
    ok = [0]
    deadline = time.monotonic() + time_limit

    def worker():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        while time.monotonic() < deadline:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            body = json.dumps({"model": "gpt-4o-mini", "messages": [
                {"role": "user", "content": f"Distinct request number {i} to fill the cache."}]})
            conn.request("POST", CHAT, body=body, headers={**AUTH, "Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                with lock:
                    ok[0] += 1
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(time_limit + 30)
    return ok[0]


def rss_mib(pid):
    """VmRSS of ``pid`` from /proc (MiB), or None off Linux."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def cpu_seconds(pid):
    """User + system CPU time of ``pid`` so far (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def settle(pids, busy=0.05, interval=0.5, time_limit=30.0):
    """Wait until every process in ``pids`` uses under ``busy`` of a CPU (e.g. analytics caught up); seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < time_limit:
        before = [cpu_seconds(pid) for pid in pids]
        time.sleep(interval)
        after = [cpu_seconds(pid) for pid in pids]
        if all(a is None or b is None or (b - a) / interval < busy for a, b in zip(before, after)):
            break
    return time.monotonic() - began


def cache_entries(origin):
    conn = http.client.HTTPConnection(urlsplit(origin).hostname, urlsplit(origin).port, timeout=10)
    conn.request("GET", "/bmad/performance", headers=AUTH)
    stats = json.loads(conn.getresponse().read())["stats"]
    conn.close()
    return stats["cache"].get("entries")


# -- the run ----------------------------------------------------------------------------------

def measure(loader, cells, rounds, seconds, log, quiet_pids=(), server_pids=None):
    """Run every (name, concurrency) cell ``rounds`` times, interleaved; returns the median of each figure.

    Before each cell the processes in ``quiet_pids`` are given time to finish
    background work left by the one before (the analytics writer catching up).
    ``server_pids`` (cell name -> pid) adds ``cpu_us``: the server process's
    CPU time per request, which a busy machine disturbs far less than req/s.
    """
    server_pids = server_pids or {}
    results = {}
    for r in range(rounds):
        for name, url, body, headers in cells:
            for concurrency in (1, 16):
                settle(quiet_pids)
                loader.run(url, concurrency, 1, body, headers)  # warm-up: connections, caches, pools
                pid = server_pids.get(name)
                cpu_before = cpu_seconds(pid) if pid else None
                result = loader.run(url, concurrency, seconds, body, headers)
                if cpu_before is not None and result["count"]:
                    result["cpu_us"] = (cpu_seconds(pid) - cpu_before) / result["count"] * 1e6
                results.setdefault((name, concurrency), []).append(result)
                log(f"  round {r + 1}/{rounds} {name:<22} c{concurrency:<3} {result['rps']:>9.0f} req/s  "
                    f"p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms  errors {result['errors']}")
    return {key: {figure: statistics.median(r.get(figure, math.nan) for r in runs)
                  for figure in ("rps", "p50_ms", "p99_ms", "cpu_us")}
            | {"errors": sum(r["errors"] for r in runs), "rounds": [round(r["rps"]) for r in runs]}
            for key, runs in results.items()}


def targets(figures):
    """``[(name, value, comparison, limit, what, met)]`` for every target that was measured."""
    out = []
    for name, comparison, limit, what in TARGETS:
        value = figures.get(name)
        if value is None:
            continue
        met = value >= limit if comparison == ">=" else value <= limit
        out.append((name, value, comparison, limit, what, met))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=3.0, help="seconds of load per cell and round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table shows medians")
    p.add_argument("--loader", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--upstream", choices=("auto", "python"), default="auto", help="python: skip nginx")
    p.add_argument("--peer", choices=("litellm",), action="append", default=[])
    p.add_argument("--litellm", help="the litellm executable (default: /tmp/litellm-venv/bin/litellm or PATH)")
    p.add_argument("--ttfb-requests", type=int, default=300)
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-round lines")
    args = p.parse_args(argv)
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))

    procs = Processes()
    try:
        loader = Loader(args.loader, procs.tmp)
        origin, upstream_kind = start_upstream(procs, args.upstream == "auto")
        sse_origin = f"http://127.0.0.1:{procs.spawn(_serve_sse_upstream)}"
        miss_url, miss_process = start_gateway(procs, "miss", origin, sse_origin, cache=False)
        hit_url, hit_process = start_gateway(procs, "hit", origin, sse_origin, cache=True)
        start_rss = rss_mib(hit_process.pid)
        proxy_url, proxy_process = start_minimal_proxy(procs, origin)
        server_pids = {"minimal stdlib proxy": proxy_process.pid, "gateway cache miss": miss_process.pid,
                       "gateway cache hit": hit_process.pid, "/bmad/health": hit_process.pid}
        body = BODY.encode()
        cells = [("upstream direct", origin + CHAT, body, {}),
                 ("minimal stdlib proxy", proxy_url + CHAT, body, {}),
                 ("gateway cache miss", miss_url + CHAT, body, AUTH),
                 ("gateway cache hit", hit_url + CHAT, body, AUTH),
                 ("/bmad/health", hit_url + "/bmad/health", None, {})]
        litellm_note = None
        if "litellm" in args.peer:
            executable = find_litellm(args.litellm)
            if executable is None:
                litellm_note = "LiteLLM not found (python -m venv /tmp/litellm-venv && " \
                               "/tmp/litellm-venv/bin/pip install 'litellm[proxy]')"
            else:
                log(f"starting LiteLLM ({executable}) ...")
                litellm_url, litellm_process = start_litellm(procs, executable, origin)
                server_pids["LiteLLM proxy"] = litellm_process.pid
                cells.append(("LiteLLM proxy", litellm_url + CHAT, body,
                              {"Authorization": f"Bearer {LITELLM_KEY}"}))
        log(f"upstream: {upstream_kind}; load: {loader.name}; {args.rounds} rounds x {args.duration:g}s per cell")
        gateway_pids = [miss_process.pid, hit_process.pid]
        table = measure(loader, cells, args.rounds, args.duration, log, gateway_pids, server_pids)
        settle(gateway_pids)

        log("streaming time to first byte ...")
        ttfb = {}
        for name, url, headers in (("direct", sse_origin, {}), ("gateway", hit_url, AUTH)):
            ttfb_samples(url, CHAT, STREAM_BODY, headers, 30)  # warm-up
            ttfb[name] = ttfb_samples(url, CHAT, STREAM_BODY, headers, args.ttfb_requests)
        direct_ttfb, gateway_ttfb = ttfb["direct"], ttfb["gateway"]

        log(f"filling the cache with {CACHE_ENTRIES} distinct requests ...")
        filled = fill_cache(hit_url, CACHE_ENTRIES)
        settle(gateway_pids)
        entries = cache_entries(hit_url)
        rss = rss_mib(hit_process.pid)
    except RuntimeError as e:
        print(f"benchmark could not run: {e}", file=sys.stderr)
        return 2
    finally:
        procs.close()

    row = lambda name, c: table.get((name, c))
    figures = {}
    miss1, miss16 = row("gateway cache miss", 1), row("gateway cache miss", 16)
    figures["miss_vs_minimal_c16"] = miss16["rps"] / row("minimal stdlib proxy", 16)["rps"]
    figures["overhead_c1_ms"] = miss1["p50_ms"] - row("upstream direct", 1)["p50_ms"]
    figures["hit_vs_health_c16"] = row("gateway cache hit", 16)["rps"] / row("/bmad/health", 16)["rps"]
    figures["health_p50_c1_ms"] = row("/bmad/health", 1)["p50_ms"]
    d_ttfb, g_ttfb = statistics.median(direct_ttfb), statistics.median(gateway_ttfb)
    figures["ttfb_added_ms"] = g_ttfb - d_ttfb
    if rss is not None:
        figures["rss_mib"] = rss
    if row("LiteLLM proxy", 16):
        figures["miss_vs_litellm_c16"] = miss16["rps"] / row("LiteLLM proxy", 16)["rps"]

    print(f"upstream: {upstream_kind}; load: {loader.name}, keep-alive; {os.cpu_count()} CPUs; "
          f"medians of {args.rounds} rounds x {args.duration:g}s per cell")
    print(f"{'':<22} {'c1 req/s':>9} {'p50 ms':>8} {'p99 ms':>8}   {'c16 req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
          f"  {'CPU us/req c16':>14}  errors")
    for name, *_ in cells:
        a, b = row(name, 1), row(name, 16)
        print(f"{name:<22} {a['rps']:>9.0f} {a['p50_ms']:>8.3f} {a['p99_ms']:>8.3f}   "
              f"{b['rps']:>9.0f} {b['p50_ms']:>8.3f} {b['p99_ms']:>8.3f}  "
              f"{'-' if math.isnan(b['cpu_us']) else format(b['cpu_us'], '.0f'):>14}  {a['errors'] + b['errors']}")
    print(f"streaming TTFB (Python fake SSE upstream, median of {len(gateway_ttfb)}): direct {d_ttfb:.3f} ms, "
          f"through the gateway {g_ttfb:.3f} ms")
    print(f"cache fill: {filled}/{CACHE_ENTRIES} answered 200, {entries} entries; "
          f"gateway RSS {'n/a' if rss is None else f'{rss:.1f} MiB'} (at start {start_rss or 0:.1f} MiB)")
    if litellm_note:
        print(litellm_note)
    print()
    print(f"{'target':<62} {'value':>8}   {'limit':>8}  met")
    results = targets(figures)
    for name, value, comparison, limit, what, met in results:
        print(f"{what:<62} {value:>8.3f}   {comparison} {limit:<5g}  {'yes' if met else 'NO'}")
    errors = sum(r["errors"] for r in table.values())
    if errors:
        print(f"note: {errors} requests failed or were not 2xx (see the errors column)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"table": {f"{k[0]} c{k[1]}": v for k, v in table.items()}, "figures": figures,
                       "ttfb_ms": {"direct": d_ttfb, "gateway": g_ttfb}, "upstream": upstream_kind,
                       "loader": loader.name}, f, indent=2)
    return 0 if all(r[-1] for r in results) and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
