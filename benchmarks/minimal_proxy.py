"""The baseline for the gateway benchmark: the least a stdlib Python proxy can do.

``python -m benchmarks.minimal_proxy UPSTREAM_URL [--port 0]`` prints
``listening on PORT`` and forwards every request (method, path, body,
Content-Type and Authorization) to the upstream over pooled keep-alive
``http.client`` connections, answering with the upstream's status, body and
Content-Type. No auth, limits, logging or metrics: a ``ThreadingHTTPServer``
with ``protocol_version = "HTTP/1.1"`` and one pool, nothing else, so the
gateway's cache-miss throughput can be stated as a ratio of it.
"""

import argparse
import http.client
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FORWARDED = ("Content-Type", "Authorization")


class Pool:
    """Idle keep-alive connections to one upstream, shared by every handler thread."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.idle = []
        self.lock = threading.Lock()

    def get(self):
        with self.lock:
            if self.idle:
                return self.idle.pop()
        return http.client.HTTPConnection(self.host, self.port, timeout=30)

    def put(self, conn):
        with self.lock:
            self.idle.append(conn)


class ProxyHandler(BaseHTTPRequestHandler):
    """Forward one request to the upstream and copy its answer back."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    pool = None  # set by serve()

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {name: self.headers[name] for name in FORWARDED if name in self.headers}
        conn = self.pool.get()
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self.send_error(502)
            return
        self.pool.put(conn)
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.getheader("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _forward

    def log_message(self, format, *args):
        """No access log: the baseline does nothing it does not have to."""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512


def serve(upstream_url, port=0):
    """Build the proxy on 127.0.0.1:``port``; returns the server (not yet serving)."""
    parts = urlsplit(upstream_url)
    handler = type("Handler", (ProxyHandler,), {"pool": Pool(parts.hostname, parts.port or 80)})
    return Server(("127.0.0.1", port), handler)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("upstream", help="e.g. http://127.0.0.1:8000")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    server = serve(args.upstream, args.port)
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
