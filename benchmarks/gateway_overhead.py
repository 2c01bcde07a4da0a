"""Gateway overhead on a non-streamed chat completion, at concurrency 1 over keep-alive.

``python -m benchmarks.gateway_overhead [-n 2000] [--warmup 300] [--rounds 3]``

Starts a fast local fake upstream (raw sockets, one fixed OpenAI chat
completion, keep-alive) and the gateway in front of it as an ``openai``
provider, with auth, metrics, analytics, logging and the router on, and the
response cache and rate limits off (a cache hit would not reach the
upstream; the provider rate limit would refuse a benchmark). Then it
measures p50 latency of ``POST /v1/chat/completions`` sent directly to the
upstream and through the gateway, alternating rounds so both see the same
machine, and prints both and the overhead (gateway p50 minus direct p50).
The target is under 1 ms.
"""

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import threading

from benchmarks.loadgen import run

COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "A fixed answer from the fast upstream."},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}}).encode()
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(COMPLETION)
            + COMPLETION)
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [
    {"role": "system", "content": "You are a benchmark."}, {"role": "user", "content": "Say something short."}]})


class FastUpstream:
    """A minimal keep-alive HTTP/1.1 server answering every request with one fixed completion."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn):
        buf = b""
        try:
            while True:
                head_end = buf.find(b"\r\n\r\n")
                while head_end < 0:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                    head_end = buf.find(b"\r\n\r\n")
                head = buf[:head_end].lower()
                length = 0
                at = head.find(b"content-length:")
                if at >= 0:
                    length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None])
                need = head_end + 4 + length
                while len(buf) < need:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[need:]
                conn.sendall(RESPONSE)
        except OSError:
            return
        finally:
            conn.close()

    def close(self):
        """Stop accepting connections."""
        self.stopped = True
        self.sock.close()


def start_gateway(upstream_url, data_dir, analytics=True):
    """The gateway on port 0 with one openai provider pointing at the fast upstream."""
    from bmad.app import build_app
    from bmad.config import load
    from bmad.ops.logs import JsonLogger
    from bmad.service import Service

    config = load(environ={}, data={
        "server": {"host": "127.0.0.1", "port": 0}, "data_dir": data_dir, "log_level": "info",
        "auth": {"api_keys": [{"key": "bench-key", "user": "bench"}]},
        "providers": [{"name": "fast", "type": "openai", "base_url": upstream_url, "api_key": "sk-bench"}],
        "health_checks": {"interval_seconds": 0},
        "cache": {"enabled": False}, "rate_limits": {"enabled": False},
        "analytics": {"enabled": analytics}})
    devnull = os.open(os.devnull, os.O_WRONLY)
    return Service(build_app(config, environ={}, logger=JsonLogger("info", fd=devnull))).start()


def _serve_upstream(conn):
    upstream = FastUpstream()
    conn.send(upstream.port)
    conn.recv()  # until the parent says stop
    upstream.close()


def _serve_gateway(conn, upstream_url, analytics):
    with tempfile.TemporaryDirectory() as data_dir:
        gateway = start_gateway(upstream_url, data_dir, analytics)
        conn.send(gateway.url)
        conn.recv()
        gateway.stop(drain_seconds=2)


def _spawn(target, *args):
    """Run ``target`` in its own process (its own GIL, as in production); returns (process, pipe, hello)."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=target, args=(child,) + args, daemon=True)
    process.start()
    if not parent.poll(30):
        raise RuntimeError(f"{target.__name__} did not start")
    return process, parent, parent.recv()


def main(argv=None):
    """Run the measurement and print it; exit status 0 when the overhead is under 1 ms."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--requests", type=int, default=2000, help="measured requests per round and target")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3, help="alternating direct/gateway rounds")
    p.add_argument("--no-analytics", action="store_true", help="turn analytics off (to see what it costs)")
    args = p.parse_args(argv)

    up_proc, up_pipe, port = _spawn(_serve_upstream)
    upstream_url = f"http://127.0.0.1:{port}/v1"
    gw_proc, gw_pipe, gateway_url = _spawn(_serve_gateway, upstream_url, not args.no_analytics)
    try:
        direct, through = [], []
        for _ in range(args.rounds):
            direct.append(run(f"{upstream_url}/chat/completions", 1, args.requests, BODY, warmup=args.warmup))
            through.append(run(f"{gateway_url}/v1/chat/completions", 1, args.requests, BODY,
                               headers={"Authorization": "Bearer bench-key"}, warmup=args.warmup))
        errors = sum(r["errors"] for r in direct + through)
    finally:
        for pipe, proc in ((gw_pipe, gw_proc), (up_pipe, up_proc)):
            pipe.send("stop")
            proc.join(10)
    d50 = statistics.median(r["p50_ms"] for r in direct)
    g50 = statistics.median(r["p50_ms"] for r in through)
    d99 = statistics.median(r["p99_ms"] for r in direct)
    g99 = statistics.median(r["p99_ms"] for r in through)
    print(f"requests per round: {args.requests} x {args.rounds} rounds, concurrency 1, keep-alive; "
          "client, gateway and upstream in separate processes; analytics "
          f"{'off' if args.no_analytics else 'on'}, response cache and rate limits off")
    print(f"direct   p50 {d50:.3f} ms  p99 {d99:.3f} ms  ({statistics.median(r['rps'] for r in direct):.0f} req/s)")
    print(f"gateway  p50 {g50:.3f} ms  p99 {g99:.3f} ms  ({statistics.median(r['rps'] for r in through):.0f} req/s)")
    print(f"overhead p50 {g50 - d50:.3f} ms (target < 1 ms){'' if errors == 0 else f'  errors: {errors}'}")
    return 0 if g50 - d50 < 1.0 and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
