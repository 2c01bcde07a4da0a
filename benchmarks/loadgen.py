"""A small keep-alive HTTP load generator (used when wrk is not installed).

``python -m benchmarks.loadgen URL [-c CONCURRENCY] [-n REQUESTS] [--body JSON]``
prints requests/s and p50/p90/p99 latency. Each worker thread holds one
keep-alive connection and sends requests back to back; the run is bounded by
the request count and a time limit. Python clients cost CPU on the same 2
cores as the server, so compare runs made with the same generator.
"""

import argparse
import http.client
import statistics
import threading
import time
from urllib.parse import urlsplit


def run(url, concurrency=1, requests=2000, body=None, headers=None, warmup=200, time_limit=60.0):
    """Drive ``url``; returns dict(rps, p50_ms, p90_ms, p99_ms, errors, count)."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    method = "POST" if body is not None else "GET"
    hdrs = dict(headers or {})
    if body is not None:
        hdrs.setdefault("Content-Type", "application/json")
    per_worker = max(1, requests // concurrency)
    latencies = []
    errors = [0]
    lock = threading.Lock()
    start_gate = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker(measure_count):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        local = []
        local_errors = 0
        for _ in range(max(1, warmup // concurrency)):
            conn.request(method, path, body=body, headers=hdrs)
            conn.getresponse().read()
        start_gate.wait()
        for _ in range(measure_count):
            if time.monotonic() > deadline[0]:
                break
            t0 = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
                resp.read()
                if resp.status >= 500:
                    local_errors += 1
            except (OSError, http.client.HTTPException):
                local_errors += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                continue
            local.append(time.perf_counter() - t0)
        conn.close()
        with lock:
            latencies.extend(local)
            errors[0] += local_errors

    threads = [threading.Thread(target=worker, args=(per_worker,), daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    deadline[0] = time.monotonic() + time_limit
    start_gate.wait()
    began = time.perf_counter()
    for t in threads:
        t.join(time_limit + 30)
    elapsed = time.perf_counter() - began
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")
    return {"count": len(latencies), "errors": errors[0], "rps": len(latencies) / elapsed if elapsed else 0.0,
            "p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99),
            "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("-c", "--concurrency", type=int, default=1)
    p.add_argument("-n", "--requests", type=int, default=2000)
    p.add_argument("--body", help="JSON body (makes it a POST)")
    args = p.parse_args(argv)
    r = run(args.url, args.concurrency, args.requests, args.body.encode() if args.body else None)
    print(f"{r['count']} requests, {r['errors']} errors, {r['rps']:.0f} req/s, p50 {r['p50_ms']:.3f} ms, "
          f"p90 {r['p90_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms")


if __name__ == "__main__":
    main()
