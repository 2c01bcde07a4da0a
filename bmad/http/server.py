"""The HTTP/1.1 server: framing, limits, keep-alive and graceful drain.

``ConnectionHandler`` reads one request at a time off a keep-alive
connection, enforces the size and time limits, hands a ``Request`` to
``app.dispatch`` and writes the ``Response`` back with an exact
``Content-Length`` (or chunked, for streams). Everything about *what* to
answer lives in the app; this module only speaks HTTP.

Methods for the caller: ``Server(app, host, port)``, ``serve_forever()``,
``drain(seconds)``.
"""

import itertools
import re
import secrets
import socket
import sys
import threading
import time
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..errors import (BadRequest, HeadersTooLarge, HTTPError, NotImplementedYet, PayloadTooLarge, URITooLong,
                     VersionNotSupported)
from .request import Request, dumps
from .watchdog import Watchdog

MAX_REQUEST_LINE = 16384
MAX_HEADER_COUNT = 100
WRITE_TIMEOUT_SECONDS = 60.0
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z")
DIGITS = re.compile(r"[0-9]{1,18}\Z")
REASONS = {s.value: s.phrase for s in HTTPStatus}
REASONS[431] = "Request Header Fields Too Large"
# On every response unless the response sets its own: no content sniffing of JSON into HTML.
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff"}


class RequestIds:
    """Cheap unique request ids: a random per-process prefix and a counter."""

    def __init__(self):
        self._prefix = secrets.token_hex(6)
        self._counter = itertools.count(1)

    def new(self):
        return f"{self._prefix}{next(self._counter):010x}"


class _DateCache:
    """The ``Date`` header, formatted at most once a second."""

    def __init__(self):
        self._second = None
        self._value = ""

    def now(self):
        second = int(time.time())
        if second != self._second:
            self._value = formatdate(second, usegmt=True)
            self._second = second
        return self._value


class Server(ThreadingHTTPServer):
    """A threading HTTP server with a connection cap and a graceful drain."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, app, host, port, reuse_port=False):
        self.app = app
        self.reuse_port = reuse_port  # workers share one port; the kernel spreads connections over them
        limits = app.config["server"]
        self.max_connections = limits["max_connections"]
        self.header_timeout = limits["header_timeout_seconds"]
        self.keepalive_timeout = limits["keepalive_seconds"]
        self.max_body_bytes = limits["max_body_bytes"]
        self.max_header_bytes = limits["max_header_bytes"]
        self.max_json_depth = limits["max_json_depth"]
        self.draining = False
        self.ids = RequestIds()
        self.dates = _DateCache()
        self.watchdog = Watchdog(interval=min(0.25, self.header_timeout / 4))
        self.rejected_connections = 0
        self._open = 0
        self._open_lock = threading.Lock()
        self._in_flight = 0
        self._closing = False  # set, under _idle, once a drain has seen nothing in flight
        self._idle = threading.Condition()
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), ConnectionHandler)
        self.watchdog.start()

    def server_bind(self):
        if self.reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    @property
    def port(self):
        return self.server_address[1]

    @property
    def open_connections(self):
        return self._open

    @property
    def in_flight(self):
        return self._in_flight

    def process_request(self, request, client_address):
        with self._open_lock:
            admit = self._open < self.max_connections or self.watchdog.evict_oldest()
            if admit:
                self._open += 1
        if not admit:
            self.rejected_connections += 1
            _reject(request, self.ids.new())
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self):
        with self._open_lock:
            self._open -= 1

    def handle_error(self, request, client_address):
        self.app.logger.error("connection error", error=_describe_current())

    def begin_request(self):
        """Count a request in flight; False once the drain is over (the request is then left unread)."""
        with self._idle:
            if self._closing:
                return False
            self._in_flight += 1
            return True

    def end_request(self):
        with self._idle:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()

    def drain(self, seconds):
        """Stop accepting, answer 503 to new requests, wait for in-flight ones.

        Must be called from a thread other than the one in ``serve_forever``.
        Returns True when every in-flight request finished in time.
        """
        self.draining = True
        self.shutdown()
        self._answer_backlog()
        self.socket.close()
        deadline = time.monotonic() + seconds
        with self._idle:
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(left)
            finished = self._in_flight == 0
            # From here no request is begun, so cut_all cannot close a connection whose request was read.
            self._closing = True
        self.watchdog.cut_all()
        return finished

    def _answer_backlog(self):
        """Take the connections the kernel completed but nobody accepted yet; each gets the draining 503.

        Closing the listening socket would reset them, after their clients had connected and sent a request.
        Bounded by the backlog size, as clients that were just answered may reconnect at once.
        """
        self.socket.setblocking(False)
        for _ in range(self.request_queue_size):
            try:
                request, client_address = self.socket.accept()
            except OSError:
                return
            request.setblocking(True)
            self.process_request(request, client_address)

    def server_close(self):
        super().server_close()
        self.watchdog.stop()


def _reject(sock, request_id):
    body = dumps({"status": "error", "error": {"type": "too_many_connections",
                                               "message": "the server is at its connection limit; retry shortly",
                                               "request_id": request_id}})
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Retry-After: 1\r\nX-Request-ID: {request_id}\r\nX-Content-Type-Options: nosniff\r\n"
            f"X-Response-Time: 0.000ms\r\nConnection: close\r\n\r\n")
    try:
        sock.settimeout(0.5)
        sock.sendall(head.encode("ascii") + body)
    except OSError:
        pass


def _describe_current():
    exc = sys.exc_info()[1]
    return f"{type(exc).__name__}: {exc}" if exc else "unknown"


class ConnectionHandler(BaseHTTPRequestHandler):
    """Serves the requests of one connection, one at a time (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "bmad-api"
    timeout = WRITE_TIMEOUT_SECONDS
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        self.served = 0

    def handle_one_request(self):
        server = self.server
        sock = self.connection
        self.close_connection = True
        waited_since = time.monotonic()
        server.watchdog.arm(sock, server.keepalive_timeout if self.served else server.header_timeout)
        try:
            if not self.rfile.peek(1):
                server.watchdog.disarm(sock)
                return
        except (OSError, ValueError):
            server.watchdog.disarm(sock)
            return
        started = time.perf_counter()
        # A request counts as in flight from its first byte, so a drain waits for
        # one whose head or body is still arriving; it is served normally.
        arrived_draining = server.draining
        if not server.begin_request():
            server.watchdog.disarm(sock)
            return
        try:
            self._serve_one(sock, waited_since, started, arrived_draining)
        finally:
            server.end_request()

    def _serve_one(self, sock, waited_since, started, arrived_draining):
        server = self.server
        server.watchdog.arm(sock, server.header_timeout, since=waited_since)
        request_id = None
        try:
            try:
                method, target, version, headers = self._read_head()
                request_id = headers.get("x-request-id")
                if request_id is None or not REQUEST_ID.match(request_id):
                    request_id = server.ids.new()
                body, framed = self._read_body(method, version, headers)
            finally:
                server.watchdog.disarm(sock)
        except HTTPError as e:
            self._answer_unparsed(e, request_id or server.ids.new(), started)
            return
        except (OSError, ValueError):
            return
        if body is None:
            return
        self.served += 1
        path, _, query = target.partition("?")
        req = Request(method, path, query, headers, body, client_ip=self.client_address[0],
                      request_id=request_id, app=server.app, started=started,
                      max_json_depth=server.max_json_depth)
        req.context["framed"] = framed
        self.close_connection = not _keep_alive(version, headers)
        if arrived_draining:
            self.close_connection = True
            response = server.app.draining_response(req)
        else:
            response = server.app.dispatch(req)
            if server.draining:
                self.close_connection = True
        self._write(req, response)

    # -- reading -------------------------------------------------------------------------------

    def _read_head(self):
        line = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if line in (b"\r\n", b"\n"):  # RFC 9112 section 2.2: ignore one empty line before a request
            line = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if not line:
            raise OSError("connection closed")
        if len(line) > MAX_REQUEST_LINE:
            raise URITooLong(f"the request line is longer than {MAX_REQUEST_LINE} bytes", close=True)
        if not line.endswith(b"\n"):
            raise OSError("connection closed mid-line")
        try:
            text = line.decode("ascii").rstrip("\r\n")
        except UnicodeDecodeError:
            raise BadRequest("the request line is not ASCII", close=True) from None
        parts = text.split(" ")
        if len(parts) != 3:
            raise BadRequest("malformed request line", close=True)
        method, target, version = parts
        if not TOKEN.match(method):
            raise BadRequest("malformed request method", close=True)
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            if re.match(r"HTTP/\d\.\d\Z", version):
                raise VersionNotSupported(f"{version} is not supported; use HTTP/1.1", close=True)
            raise BadRequest("malformed HTTP version", close=True)
        if not target.startswith("/") or any(ord(c) < 33 or ord(c) == 127 for c in target):
            raise BadRequest("the request target must be an absolute path", close=True)
        self.command, self.path, self.request_version = method, target, version
        headers = {}
        total = len(line)
        while True:
            line = self.rfile.readline(self.server.max_header_bytes + 1)
            total += len(line)
            if total > self.server.max_header_bytes:
                raise HeadersTooLarge(f"the request headers are larger than {self.server.max_header_bytes} bytes",
                                      close=True)
            if line in (b"\r\n", b"\n"):
                break
            if not line.endswith(b"\n"):
                raise OSError("connection closed in headers")
            if len(headers) >= MAX_HEADER_COUNT:
                raise HeadersTooLarge(f"more than {MAX_HEADER_COUNT} request headers", close=True)
            if line[:1] in (b" ", b"\t"):
                raise BadRequest("obsolete header line folding is not accepted", close=True)
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep or not TOKEN.match(name):
                raise BadRequest(f"malformed header line {name[:40]!r}", close=True)
            name = name.lower()
            value = value.strip(" \t\r\n")
            if "\x00" in value or "\r" in value or "\n" in value:
                raise BadRequest(f"header {name} contains a forbidden character", close=True)
            if name in headers:
                if name in ("content-length", "host"):
                    raise BadRequest(f"duplicate {name} header", close=True)
                headers[name] = f"{headers[name]}, {value}"
            else:
                headers[name] = value
        return method, target, version, headers

    def _read_body(self, method, version, headers):
        """Return ``(body, framed)``; body None when the client went away."""
        te = headers.get("transfer-encoding")
        cl = headers.get("content-length")
        limit = self.server.max_body_bytes
        if te is not None:
            if cl is not None:  # RFC 9112 section 6.1: a request smuggling shape
                raise BadRequest("both Content-Length and Transfer-Encoding are present", close=True)
            if version == "HTTP/1.0":
                raise BadRequest("Transfer-Encoding is not allowed in HTTP/1.0", close=True)
            codings = [c.strip().lower() for c in te.split(",")]
            if codings[-1] != "chunked":
                raise BadRequest("Transfer-Encoding must end with chunked", close=True)
            if codings.count("chunked") > 1:  # RFC 9112 section 6.1: chunked at most once (duplicate headers)
                raise BadRequest("chunked is applied more than once", close=True)
            if codings != ["chunked"]:
                raise NotImplementedYet(f"transfer coding {codings[0]!r} is not supported", close=True)
            self._continue(version, headers)
            return self._read_chunked(limit), True
        if cl is not None:
            if not DIGITS.match(cl):
                raise BadRequest("Content-Length must be a non-negative integer", close=True)
            length = int(cl)
            if length > limit:
                raise PayloadTooLarge(f"the body is {length} bytes; the limit is {limit}", close=True)
            if length == 0:
                return b"", True
            self._continue(version, headers)
            body = self.rfile.read(length)
            return (body if len(body) == length else None), True
        return b"", False

    def _continue(self, version, headers):
        if version == "HTTP/1.1" and headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _read_chunked(self, limit):
        parts = []
        total = 0
        while True:
            line = self.rfile.readline(1026)
            if not line.endswith(b"\n"):
                raise BadRequest("malformed chunk size line", close=True)
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or len(size_text) > 16 or not re.match(rb"[0-9A-Fa-f]+\Z", size_text):
                raise BadRequest("malformed chunk size", close=True)
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > limit:
                raise PayloadTooLarge(f"the chunked body is larger than the limit of {limit} bytes", close=True)
            data = self.rfile.read(size)
            if len(data) != size or self.rfile.read(2) not in (b"\r\n",):
                raise BadRequest("malformed chunked body", close=True)
            parts.append(data)
        trailer_bytes = 0
        while True:  # trailers: read and drop, bounded
            line = self.rfile.readline(self.server.max_header_bytes + 1)
            trailer_bytes += len(line)
            if trailer_bytes > self.server.max_header_bytes or not line.endswith(b"\n"):
                raise BadRequest("malformed chunked trailer", close=True)
            if line in (b"\r\n", b"\n"):
                break
        return b"".join(parts)

    # -- writing -------------------------------------------------------------------------------

    def _answer_unparsed(self, error, request_id, started):
        """Answer a request that could not be read; the connection then closes."""
        self.close_connection = True
        self.served += 1
        method = getattr(self, "command", None) or "-"
        path = (getattr(self, "path", None) or "-").partition("?")[0]
        req = Request(method, path[:200], "", {}, client_ip=self.client_address[0], request_id=request_id,
                      app=self.server.app, started=started)
        self._write(req, self.server.app.error_response(req, error))

    def _write(self, req, response):
        server = self.server
        if response.headers.get("Connection") == "close":
            self.close_connection = True
        streaming = response.stream is not None
        body = response.body
        lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}\r\n"
                 f"Date: {server.dates.now()}\r\n"
                 f"Content-Type: {response.content_type}\r\n"]
        if streaming:
            lines.append("Transfer-Encoding: chunked\r\n")
        elif response.status == 304 or response.status == 204:
            body = b""  # RFC 9110 sections 8.6 and 15.4.5: no content and no length of content
        else:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append(f"X-Request-ID: {req.request_id}\r\n")
        for name, value in req.response_headers.items():
            lines.append(f"{name}: {value}\r\n")
        for name, value in response.headers.items():
            if name != "Connection":
                lines.append(f"{name}: {value}\r\n")
        for name, value in SECURITY_HEADERS.items():
            if name not in response.headers:
                lines.append(f"{name}: {value}\r\n")
        if self.close_connection:
            lines.append("Connection: close\r\n")
        elif req.headers.get("connection", "").lower() == "keep-alive":
            lines.append("Connection: keep-alive\r\n")
        elapsed = (time.perf_counter() - req.started) * 1000.0
        lines.append(f"X-Response-Time: {elapsed:.3f}ms\r\n\r\n")
        head = "".join(lines).encode("latin-1", "replace")
        head_only = req.method == "HEAD"
        status = response.status
        try:
            if not streaming:
                self.wfile.write(head if head_only else head + body)
            else:
                self.wfile.write(head)
                if head_only:
                    response.stream.close() if hasattr(response.stream, "close") else None
                else:
                    status = self._write_stream(response.stream)
        except OSError:
            self.close_connection = True
            status = 499  # the client went away before the answer was written
        server.app.observe(req, response.status if status != 499 else 499,
                           (time.perf_counter() - req.started) * 1000.0)

    def _write_stream(self, chunks):
        write = self.wfile.write
        try:
            for chunk in chunks:
                if chunk:
                    write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            write(b"0\r\n\r\n")
            return 200
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()

    def log_message(self, format, *args):
        """Requests are logged as JSON by the app; silence http.server's own lines."""


def _keep_alive(version, headers):
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection
