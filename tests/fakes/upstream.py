"""Fake LLM providers: real HTTP/1.1 servers on 127.0.0.1 speaking provider wire formats.

Standard library only. Each :class:`FakeUpstream` is a ``ThreadingHTTPServer``-based
server (keep-alive, chunked streaming, daemon threads) that records every request
and can inject faults. Tests point the gateway at ``up.base_url``.

Quick use::

    with FakeUpstream("openai", api_key="sk-test") as up:
        ...  # gateway -> up.base_url ("http://127.0.0.1:PORT/v1")
        assert up.requests[-1].json["model"] == "gpt-4o-mini"

Kinds and routes
----------------
``openai``  (``base_url = http://127.0.0.1:PORT/v1``)
    ``POST /v1/chat/completions``  chat (stream or not)
    ``GET  /v1/models``            health / model list ``{"object":"list","data":[{"id","object":"model","created","owned_by"}]}``
    Auth when ``up.api_key`` is set: ``Authorization: Bearer <key>``; otherwise 401.
    Errors: ``{"error": {"message", "type", "param", "code"}}``.

``anthropic``  (``base_url = http://127.0.0.1:PORT``)
    ``POST /v1/messages``          chat (stream or not)
    ``GET  /v1/models``            ``{"data":[{"type":"model","id","display_name","created_at"}],"has_more":false,"first_id","last_id"}``
    Auth when set: ``x-api-key: <key>`` or ``Authorization: Bearer <key>`` (the
    anthropic SDK >= 2.x sends the key as Bearer). ``anthropic-version`` header is always required
    (400 without it). ``max_tokens``/``model``/``messages`` required (400).
    Errors: ``{"type":"error","error":{"type","message"},"request_id"}``;
    status -> type: 400 invalid_request_error, 401 authentication_error,
    403 permission_error, 404 not_found_error, 413 request_too_large,
    429 rate_limit_error, 500 api_error, 529 overloaded_error (other 4xx ->
    invalid_request_error, other 5xx -> api_error).

``azure``  (``base_url = http://127.0.0.1:PORT`` -- the Azure *endpoint*, as given to
``AzureOpenAI(azure_endpoint=...)``)
    ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` (OpenAI-shaped
    bodies plus Azure's ``prompt_filter_results``/``content_filter_results``)
    ``GET  /openai/models?api-version=...``  -- the real data-plane "Models - List"
    operation (what ``AzureOpenAI().models.list()`` calls); use this for health.
    ``GET  /openai/deployments?api-version=...`` -- legacy (2022-12-01) deployment list,
    kept for compatibility; returns ``up.deployments`` or ``["gpt-4o-mini"]``.
    ``api-version`` query is required (missing -> 404 ``Resource not found``, like Azure).
    Auth when set: ``api-key`` header (401 otherwise). If ``up.deployments`` is a
    collection, unknown deployments -> 404 ``DeploymentNotFound``.
    Errors: OpenAI 4-field shape with Azure-style codes (``type`` is null).

Responses
---------
* ``up.reply``: str, callable(RecordedRequest) -> str, or None (default
  ``"fake-<kind> reply to: <first 40 chars of the last user message>"``).
* ``up.usage = (prompt_tokens, completion_tokens)``, default ``(11, 7)``.
* ``model`` echoes the request's ``model`` (Azure: request model or deployment name).
* Streaming (``"stream": true``): ``text/event-stream``, chunked transfer-encoding,
  one chunk per SSE event, written immediately (TCP_NODELAY). OpenAI: role chunk,
  ~3 content chunks, finish chunk, usage chunk (``choices: []``) when
  ``stream_options.include_usage`` (other chunks then carry ``"usage": null``), then
  ``data: [DONE]``. Anthropic: message_start (input_tokens), content_block_start, ping,
  content_block_delta x~3, content_block_stop, message_delta (output_tokens),
  message_stop -- each with an ``event:`` line.
* ``up.delay_seconds``: latency added before every chat/messages response.
* ``up.keep_alive = False`` makes every response ``Connection: close``.
* Every response carries the provider's own request id (OpenAI ``x-request-id``,
  Anthropic ``request-id``, Azure ``apim-request-id`` + ``x-request-id``): random
  ``req_...``, or ``up.request_id`` when set.
* ``up.azure_prompt_filter_chunk = True``: Azure streams start with the real-Azure
  leading chunk that has ``choices: []`` and ``prompt_filter_results``.

Recording (thread-safe snapshots)
---------------------------------
``up.requests`` -> list[:class:`RecordedRequest`] (attrs or ``rec["key"]``): ``method``,
``path`` (no query), ``query`` (dict, first value wins), ``headers`` (dict, lower-case
names), ``json`` (parsed body or None), ``body`` (raw bytes), ``t_received``
(``time.monotonic()`` when the request head was parsed), ``connection_id`` (1-based
accept order), ``route`` ("chat" | "health" | None), ``fault`` (name applied or None).
``up.connections_accepted`` -> TCP connections accepted (counted in ``get_request``).
``up.last_request``, ``up.wait_for_requests(n, timeout=2.0)``.
``up.reset()`` clears records, the connection counter and all faults (and revives a
"down" server); configuration (reply, usage, delay_seconds, api_key) is kept.

Faults
------
``up.fault(name, times=None, *, health=False, **opts)`` queues a fault applying to
the next ``times`` matching requests (None = until cleared). Faults match the
chat/messages route, or the models/health route with ``health=True``. Queued faults
are consumed in FIFO order (first matching one wins). ``up.clear_faults()`` (alias
``up.fault_clear()``) drops them all and revives a downed server. Every fault accepts ``headers={...}`` (extra
response headers, where a response is sent). Faults are applied before auth and
validation. Names / options:

``status``          ``status=500``, ``body=None`` (str/bytes/dict override; default is the
                    provider error shape), ``message=None``.
``rate_limit``      429, ``Retry-After: <retry_after>`` (default 1; None omits it), provider error body.
``hang``            read the request, wait ``seconds`` (default 30) on an Event, close with no
                    answer. Released immediately by ``stop()`` / ``down``.
``reset``           read the request, then RST (SO_LINGER on, 0 s) before any response.
``malformed``       200 ``application/json`` with a non-JSON body (``body=`` override).
``truncated``       200 with ``Content-Length`` = full body size but only the first half sent, then FIN.
``slow_stream``     stream requests only: ``interval`` seconds (default 0.2) between events.
``reset_mid_stream`` stream requests only: headers + ``after`` (default 2) events, then RST.
``huge``            200 valid provider-shaped JSON of exactly ``size`` bytes (default 11 MiB),
                    non-streamed even for stream requests.
``delay``           (extra) wait ``seconds`` (default 1.0) then answer normally.
``down``            immediate and global (``times``/``health`` ignored): the listener is
                    closed and open connections are shut, so connects get ECONNREFUSED.
                    ``up.revive()`` (or ``clear_faults()``/``reset()``) re-binds the SAME
                    port (SO_REUSEADDR; retried for ~1 s, raises OSError if the port was
                    taken meanwhile). ``up.is_down`` tells the state.

Lifecycle
---------
``start()`` (returns self) binds 127.0.0.1:0; ``stop(timeout=2.0)`` closes the listener,
shuts every open client connection, releases hung handlers and joins all threads,
bounded by ``timeout``. Context manager: ``with FakeUpstream("openai") as up``.
"""

from __future__ import annotations

import http.server
import json
import random
import re
import selectors
import socket
import string
import struct
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from tests.support import poll

KINDS = ("openai", "anthropic", "azure")

FAULT_NAMES = (
    "status",
    "rate_limit",
    "hang",
    "reset",
    "malformed",
    "truncated",
    "slow_stream",
    "reset_mid_stream",
    "huge",
    "delay",
    "down",
)

_FAULT_OPTS = {
    "status": {"status", "body", "message"},
    "rate_limit": {"retry_after", "body", "message"},
    "hang": {"seconds"},
    "reset": set(),
    "malformed": {"body"},
    "truncated": set(),
    "slow_stream": {"interval"},
    "reset_mid_stream": {"after"},
    "huge": {"size"},
    "delay": {"seconds"},
    "down": set(),
}
_STREAM_ONLY_FAULTS = {"slow_stream", "reset_mid_stream"}

_DEFAULT_MODELS = {
    "openai": ["gpt-4o-mini", "gpt-4o"],
    "anthropic": ["claude-3-5-haiku-20241022", "claude-sonnet-4-20250514"],
    "azure": ["gpt-4o-mini", "gpt-4o"],
}

_AZURE_CHAT_RE = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")

_REASONS = {529: "Overloaded"}


def _rand_id(n: int = 24) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(random.choice(alphabet) for _ in range(n))


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass
class RecordedRequest:
    """One request as received by a fake upstream."""

    method: str
    path: str
    query: dict
    headers: dict
    json: Any
    body: bytes
    t_received: float
    connection_id: int
    route: str | None = None
    fault: str | None = None

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


@dataclass
class _Fault:
    name: str
    remaining: int | None
    health: bool
    opts: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- server


class _Server(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer with connection accounting and a bounded serve loop."""

    daemon_threads = True
    block_on_close = False  # we join our own threads with a deadline
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, owner: "FakeUpstream"):
        self.owner = owner
        self.closing = threading.Event()  # set on stop()/down: releases waits in handlers
        self.quit = threading.Event()
        self.loop_thread: threading.Thread | None = None
        self._conns: dict[int, tuple[socket.socket, int]] = {}
        self._conns_lock = threading.Lock()
        super().__init__(addr, handler)

    def server_bind(self):  # skip HTTPServer's getfqdn() (slow reverse DNS)
        import socketserver

        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def get_request(self):
        sock, addr = super().get_request()
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        conn_id = self.owner._on_accept()
        with self._conns_lock:
            self._conns[id(sock)] = (sock, conn_id)
        return sock, addr

    def conn_id(self, sock) -> int:
        with self._conns_lock:
            entry = self._conns.get(id(sock))
        return entry[1] if entry else 0

    def process_request(self, request, client_address):
        t = threading.Thread(
            target=self._run_request,
            args=(request, client_address),
            name=f"fake-{self.owner.kind}-conn",
            daemon=True,
        )
        self.owner._track_thread(t)
        t.start()

    def _run_request(self, request, client_address):
        try:
            self.process_request_thread(request, client_address)
        finally:
            self.owner._untrack_thread(threading.current_thread())

    def shutdown_request(self, request):
        with self._conns_lock:
            self._conns.pop(id(request), None)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):  # keep test output clean
        pass

    def serve(self):
        with selectors.DefaultSelector() as sel:
            sel.register(self.socket, selectors.EVENT_READ)
            while not self.quit.is_set():
                try:
                    ready = sel.select(0.05)
                except (OSError, ValueError):
                    break
                if ready and not self.quit.is_set():
                    self._handle_request_noblock()

    def shutdown_connections(self):
        with self._conns_lock:
            socks = [s for s, _ in self._conns.values()]
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close_connections(self):
        with self._conns_lock:
            socks = [s for s, _ in self._conns.values()]
            self._conns.clear()
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-upstream/1.0"
    sys_version = ""
    server: _Server

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    # ---------------------------------------------------------------- plumbing

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("eof in chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:
                        trailer = self.rfile.readline(65537)
                        if trailer in (b"\r\n", b"\n", b""):
                            return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _wait(self, seconds: float) -> bool:
        """Interruptible sleep. True if the server is closing (caller should bail)."""
        if seconds <= 0:
            return self.server.closing.is_set()
        return self.server.closing.wait(seconds)

    def _rst(self):
        """Abort the connection with a TCP RST."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            sock.close()  # marks closed; the real close happens when rfile drops its ref
            self.rfile.close()
        except OSError:
            pass

    def _start_response(self, status: int, headers: list[tuple[str, str]]):
        self.send_response(status, _REASONS.get(status))
        for k, v in headers:
            self.send_header(k, v)
        if not self.server.owner.keep_alive:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def _send_bytes(self, status: int, body: bytes, content_type: str, extra: list | None = None):
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        headers += self._id_headers() + list(extra or [])
        self._start_response(status, headers)
        self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, extra: list | None = None):
        self._send_bytes(status, _dumps(obj), "application/json", extra)

    def _id_headers(self) -> list[tuple[str, str]]:
        kind = self.server.owner.kind
        rid = self.server.owner.request_id or "req_" + _rand_id(24)
        if kind == "anthropic":
            return [("request-id", rid)]
        if kind == "azure":
            return [("apim-request-id", str(uuid.uuid4())), ("x-request-id", rid)]
        return [("x-request-id", rid), ("openai-processing-ms", "1")]

    def _begin_stream(self, extra: list | None = None):
        headers = [
            ("Content-Type", "text/event-stream; charset=utf-8"),
            ("Cache-Control", "no-cache"),
            ("Transfer-Encoding", "chunked"),
        ]
        self._start_response(200, headers + self._id_headers() + list(extra or []))

    def _chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self):
        up = self.server.owner
        t_received = time.monotonic()
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        query: dict[str, str] = {}
        for k, v in urllib.parse.parse_qsl(split.query, keep_blank_values=True):
            query.setdefault(k, v)
        headers: dict[str, str] = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        parsed = None
        if body:
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                parsed = None
        route, params = up._route(self.command, path)
        is_stream = route == "chat" and isinstance(parsed, dict) and parsed.get("stream") is True
        fault = up._take_fault(route, is_stream)
        rec = RecordedRequest(
            method=self.command,
            path=path,
            query=query,
            headers=headers,
            json=parsed,
            body=body,
            t_received=t_received,
            connection_id=self.server.conn_id(self.connection),
            route=route,
            fault=fault.name if fault else None,
        )
        up._record(rec)
        try:
            self._respond(rec, route, params, fault, is_stream)
        except (OSError, ValueError):  # client went away / socket shut by stop()
            self.close_connection = True

    def _respond(self, rec: RecordedRequest, route, params, fault: _Fault | None, is_stream: bool):
        up = self.server.owner
        if route == "chat" and up.delay_seconds:
            if self._wait(up.delay_seconds):
                self.close_connection = True
                return
        if fault is not None and self._apply_fault(rec, route, params, fault, is_stream):
            return
        if route is None:
            self._send_error(404, "not_found", f"Unknown request URL: {rec.method} {rec.path}")
            return
        if not self._check_request(rec, route, params):
            return
        if route == "health":
            self._send_json(200, up._models_payload(rec))
            return
        if is_stream:
            self._stream(rec, params)
        else:
            self._send_json(200, up._chat_payload(rec, params, up._reply_text(rec)))

    # ---------------------------------------------------------------- errors & validation

    def _send_error(self, status: int, code: str | None, message: str, extra: list | None = None, body=None):
        up = self.server.owner
        if body is None:
            payload = _dumps(up._error_payload(status, code, message))
        elif isinstance(body, (bytes, bytearray)):
            payload = bytes(body)
        elif isinstance(body, str):
            payload = body.encode("utf-8")
        else:
            payload = _dumps(body)
        self._send_bytes(status, payload, "application/json", extra)

    def _check_request(self, rec: RecordedRequest, route: str, params: dict) -> bool:
        up = self.server.owner
        h = rec.headers
        kind = up.kind
        if kind == "openai":
            if up.api_key is not None:
                auth = h.get("authorization", "")
                if not auth:
                    self._send_error(401, None, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
                    return False
                if auth != f"Bearer {up.api_key}":
                    self._send_error(401, "invalid_api_key", "Incorrect API key provided.")
                    return False
        elif kind == "anthropic":
            if up.api_key is not None and not (
                h.get("x-api-key") == up.api_key or h.get("authorization") == f"Bearer {up.api_key}"
            ):
                self._send_error(401, None, "invalid x-api-key")
                return False
            if not h.get("anthropic-version"):
                self._send_error(400, None, "anthropic-version: header is required")
                return False
        else:  # azure
            if "api-version" not in rec.query:
                self._send_error(404, "404", "Resource not found")
                return False
            if up.api_key is not None and h.get("api-key") != up.api_key:
                self._send_error(
                    401,
                    "401",
                    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
                )
                return False
            dep = params.get("deployment")
            if dep is not None and up.deployments is not None and dep not in up.deployments:
                self._send_error(404, "DeploymentNotFound", "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.")
                return False
        if route != "chat":
            return True
        body = rec.json
        if not isinstance(body, dict):
            if kind == "anthropic":
                self._send_error(400, None, "There was an issue with the format of your request: body is not a JSON object")
            else:
                self._send_error(400, None, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)")
            return False
        if kind == "anthropic":
            for name in ("model", "messages", "max_tokens"):
                if name not in body:
                    self._send_error(400, None, f"{name}: Field required")
                    return False
        else:
            if kind == "openai" and not body.get("model"):
                self._send_error(400, None, "you must provide a model parameter")
                return False
            if not isinstance(body.get("messages"), list):
                self._send_error(400, "missing_required_parameter", "Missing required parameter: 'messages'.", body=None)
                return False
        return True

    # ---------------------------------------------------------------- faults

    def _apply_fault(self, rec, route, params, fault: _Fault, is_stream: bool) -> bool:
        """Returns True when the fault fully handled the request."""
        up = self.server.owner
        o = fault.opts
        extra = list((o.get("headers") or {}).items())
        name = fault.name
        if name == "status":
            status = int(o.get("status", 500))
            self._send_error(status, None, o.get("message") or f"fake upstream error {status}", extra, o.get("body"))
            return True
        if name == "rate_limit":
            ra = o.get("retry_after", 1)
            if ra is not None:
                extra = [("Retry-After", str(ra))] + extra
            msg = o.get("message") or "Rate limit reached for requests. Please try again later."
            self._send_error(429, None, msg, extra, o.get("body"))
            return True
        if name == "hang":
            self._wait(float(o.get("seconds", 30.0)))
            self.close_connection = True
            return True
        if name == "reset":
            self._rst()
            return True
        if name == "malformed":
            body = o.get("body", b'{"id": "chatcmpl-broken", "choices": [ <<this is not json>>')
            if isinstance(body, str):
                body = body.encode("utf-8")
            self._send_bytes(200, body, "application/json", extra)
            return True
        if name == "truncated":
            full = _dumps(self._success_payload(rec, route, params))
            sent = full[: max(1, len(full) // 2)]
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(full)))]
            self._start_response(200, headers + self._id_headers() + extra)
            self.wfile.write(sent)
            self.close_connection = True
            return True
        if name == "huge":
            size = int(o.get("size", 11 * 1024 * 1024))
            self._send_bytes(200, self._padded(rec, route, params, size), "application/json", extra)
            return True
        if name == "delay":
            if self._wait(float(o.get("seconds", 1.0))):
                self.close_connection = True
                return True
            return False
        if name == "slow_stream":
            self._stream(rec, params, interval=float(o.get("interval", 0.2)), extra=extra)
            return True
        if name == "reset_mid_stream":
            self._stream(rec, params, abort_after=int(o.get("after", 2)), extra=extra)
            return True
        return False

    def _success_payload(self, rec, route, params) -> dict:
        up = self.server.owner
        if route == "health":
            return up._models_payload(rec)
        return up._chat_payload(rec, params, up._reply_text(rec))

    def _padded(self, rec, route, params, size: int) -> bytes:
        up = self.server.owner
        if route == "health":
            def build(pad: str) -> dict:
                p = up._models_payload(rec)
                p["padding"] = pad
                return p
        else:
            def build(pad: str) -> dict:
                return up._chat_payload(rec, params, pad)
        base = len(_dumps(build("")))
        return _dumps(build("x" * max(0, size - base)))

    # ---------------------------------------------------------------- streaming

    def _stream(self, rec, params, interval: float = 0.0, abort_after: int | None = None, extra: list | None = None):
        up = self.server.owner
        events = up._stream_events(rec, params, up._reply_text(rec))
        self._begin_stream(extra)
        for i, ev in enumerate(events):
            if abort_after is not None and i >= abort_after:
                self._rst()
                return
            if i and interval and self._wait(interval):
                self.close_connection = True
                return
            self._chunk(ev)
        if abort_after is not None:  # fewer events than `after`: still abort
            self._rst()
            return
        self._end_chunks()


# --------------------------------------------------------------------------- public


class FakeUpstream:
    """A fake LLM provider on 127.0.0.1. See the module docstring for the full API."""

    def __init__(
        self,
        kind: str = "openai",
        *,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        reply: str | Callable[[RecordedRequest], str] | None = None,
        usage: tuple[int, int] = (11, 7),
        delay_seconds: float = 0.0,
        models: list[str] | None = None,
        deployments: list[str] | set[str] | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.api_key = api_key
        self.host = host
        self.reply = reply
        self.usage = tuple(usage)
        self.delay_seconds = delay_seconds
        self.models = list(models) if models is not None else list(_DEFAULT_MODELS[kind])
        self.deployments = deployments
        self.keep_alive = True
        self.azure_prompt_filter_chunk = False
        self.request_id = None

        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.Lock()  # records, faults, counters
        self._state_lock = threading.RLock()  # server lifecycle
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._conn_count = 0
        self._conn_seq = 0
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()
        self._server: _Server | None = None
        self._down = False
        self._started = False

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "FakeUpstream":
        with self._state_lock:
            if self._started:
                return self
            self._bind(self._requested_port)
            self._started = True
            self._down = False
        return self

    def stop(self, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        with self._state_lock:
            srv, self._server = self._server, None
            self._started = False
            self._down = False
        if srv is not None:
            self._close_server(srv, deadline)
        with self._threads_lock:
            threads = list(self._threads)
        for t in threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        if srv is not None:
            srv.close_connections()

    def __enter__(self) -> "FakeUpstream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _bind(self, port: int) -> None:
        srv = _Server((self.host, port), _Handler, self)
        self._port = srv.server_address[1]
        t = threading.Thread(target=srv.serve, name=f"fake-{self.kind}-accept", daemon=True)
        srv.loop_thread = t
        self._server = srv
        t.start()

    @staticmethod
    def _close_server(srv: _Server, deadline: float) -> None:
        srv.closing.set()
        srv.quit.set()
        if srv.loop_thread is not None:
            srv.loop_thread.join(max(0.0, min(1.0, deadline - time.monotonic())))
        try:
            srv.server_close()
        except OSError:
            pass
        srv.shutdown_connections()

    def _go_down(self) -> None:
        with self._state_lock:
            if not self._started or self._down:
                return
            srv, self._server = self._server, None
            self._down = True
        if srv is not None:
            self._close_server(srv, time.monotonic() + 2.0)

    def revive(self) -> None:
        """Re-bind on the same port after a "down" fault. No-op if not down."""
        with self._state_lock:
            if not self._down:
                return
            deadline = time.monotonic() + 1.0
            while True:
                try:
                    self._bind(self._port)
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.02)
            self._down = False

    @property
    def is_down(self) -> bool:
        return self._down

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeUpstream not started")
        return self._port

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + "/v1" if self.kind == "openai" else self.origin

    def url(self, path: str) -> str:
        """Absolute URL for a server path, e.g. up.url("/v1/models")."""
        return self.origin + path

    # ---------------------------------------------------------------- recording

    def _on_accept(self) -> int:
        with self._lock:
            self._conn_count += 1
            self._conn_seq += 1
            return self._conn_seq

    def _track_thread(self, t: threading.Thread) -> None:
        with self._threads_lock:
            self._threads.add(t)

    def _untrack_thread(self, t: threading.Thread) -> None:
        with self._threads_lock:
            self._threads.discard(t)

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(rec)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest | None:
        with self._lock:
            return self._requests[-1] if self._requests else None

    @property
    def connections_accepted(self) -> int:
        with self._lock:
            return self._conn_count

    def wait_for_requests(self, n: int, timeout: float = 2.0) -> list[RecordedRequest]:
        """Poll until at least n requests were recorded; raises TimeoutError otherwise."""
        if poll(lambda: len(self.requests) >= n, timeout=timeout):
            return self.requests  # records only grow (until reset), so this still holds n
        raise TimeoutError(f"expected {n} requests, got {len(self.requests)}")

    def reset(self) -> None:
        """Clear records, connection counter and faults (revives a downed server)."""
        self.clear_faults()
        with self._lock:
            self._requests.clear()
            self._conn_count = 0

    # ---------------------------------------------------------------- faults

    def fault(self, name: str, times: int | None = None, *, health: bool = False, **opts: Any) -> None:
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r}; known: {FAULT_NAMES}")
        unknown = set(opts) - _FAULT_OPTS[name] - {"headers"}
        if unknown:
            raise TypeError(f"fault {name!r} got unknown options {sorted(unknown)}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        if name == "down":
            self._go_down()
            return
        with self._lock:
            self._faults.append(_Fault(name, times, health, dict(opts)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
        self.revive()

    fault_clear = clear_faults  # alias

    def _take_fault(self, route: str | None, is_stream: bool) -> _Fault | None:
        if route is None:
            return None
        want_health = route == "health"
        with self._lock:
            for f in self._faults:
                if f.health != want_health:
                    continue
                if f.name in _STREAM_ONLY_FAULTS and not is_stream:
                    continue
                if f.remaining is not None:
                    f.remaining -= 1
                    if f.remaining <= 0:
                        self._faults.remove(f)
                return f
        return None

    # ---------------------------------------------------------------- routing & payloads

    def _route(self, method: str, path: str) -> tuple[str | None, dict]:
        if self.kind == "openai":
            if method == "POST" and path == "/v1/chat/completions":
                return "chat", {}
            if method == "GET" and path == "/v1/models":
                return "health", {}
        elif self.kind == "anthropic":
            if method == "POST" and path == "/v1/messages":
                return "chat", {}
            if method == "GET" and path == "/v1/models":
                return "health", {}
        else:
            m = _AZURE_CHAT_RE.match(path)
            if method == "POST" and m:
                return "chat", {"deployment": urllib.parse.unquote(m.group(1))}
            if method == "GET" and path in ("/openai/models", "/openai/deployments"):
                return "health", {"list": path.rsplit("/", 1)[1]}
        return None, {}

    def _reply_text(self, rec: RecordedRequest) -> str:
        r = self.reply
        if callable(r):
            return str(r(rec))
        if r is not None:
            return str(r)
        return f"fake-{self.kind} reply to: {_last_user_text(rec.json)[:40]}"

    def _model(self, rec: RecordedRequest, params: dict) -> str:
        model = rec.json.get("model") if isinstance(rec.json, dict) else None
        return model or params.get("deployment") or self.models[0]

    def _usage(self) -> tuple[int, int]:
        p, c = self.usage
        return int(p), int(c)

    def _chat_payload(self, rec: RecordedRequest, params: dict, text: str) -> dict:
        p, c = self._usage()
        model = self._model(rec, params)
        if self.kind == "anthropic":
            return {
                "id": "msg_" + _rand_id(24),
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
                "model": model,
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": p,
                    "output_tokens": c,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            }
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
        payload = {
            "id": "chatcmpl-" + _rand_id(29),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
            "system_fingerprint": "fp_fake",
        }
        if self.kind == "azure":
            choice["content_filter_results"] = _azure_filter_results()
            payload["prompt_filter_results"] = [
                {"prompt_index": 0, "content_filter_results": _azure_filter_results()}
            ]
        return payload

    def _stream_events(self, rec: RecordedRequest, params: dict, text: str) -> list[bytes]:
        p, c = self._usage()
        model = self._model(rec, params)
        pieces = _split3(text)
        if self.kind == "anthropic":
            def ev(name: str, data: dict) -> bytes:
                return b"event: " + name.encode() + b"\ndata: " + _dumps(data) + b"\n\n"

            msg = {
                "id": "msg_" + _rand_id(24),
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": model,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": p,
                    "output_tokens": 1,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            }
            out = [
                ev("message_start", {"type": "message_start", "message": msg}),
                ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ev("ping", {"type": "ping"}),
            ]
            for piece in pieces:
                out.append(ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}))
            out += [
                ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": c}}),
                ev("message_stop", {"type": "message_stop"}),
            ]
            return out

        body = rec.json if isinstance(rec.json, dict) else {}
        so = body.get("stream_options")
        include_usage = isinstance(so, dict) and so.get("include_usage") is True
        cid = "chatcmpl-" + _rand_id(29)
        created = int(time.time())

        def chunk(choices: list, usage: Any = "omit", model_: str | None = None) -> bytes:
            d = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model if model_ is None else model_,
                "system_fingerprint": "fp_fake",
                "choices": choices,
            }
            if include_usage:
                d["usage"] = None if usage == "omit" else usage
            return b"data: " + _dumps(d) + b"\n\n"

        def choice(delta: dict, finish: str | None = None) -> dict:
            ch = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            if self.kind == "azure":
                ch["content_filter_results"] = {} if finish or "role" in delta else _azure_filter_results()
            return ch

        out = []
        if self.kind == "azure" and self.azure_prompt_filter_chunk:
            d = {
                "id": "",
                "object": "",
                "created": 0,
                "model": "",
                "choices": [],
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _azure_filter_results()}],
            }
            out.append(b"data: " + _dumps(d) + b"\n\n")
        out.append(chunk([choice({"role": "assistant", "content": "", "refusal": None})]))
        for piece in pieces:
            out.append(chunk([choice({"content": piece})]))
        out.append(chunk([choice({}, "stop")]))
        if include_usage:
            out.append(chunk([], {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}))
        out.append(b"data: [DONE]\n\n")
        return out

    def _models_payload(self, rec: RecordedRequest) -> dict:
        if self.kind == "anthropic":
            data = [
                {"type": "model", "id": m, "display_name": _display_name(m), "created_at": "2024-10-22T00:00:00Z"}
                for m in self.models
            ]
            return {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        if self.kind == "azure":
            if rec.path.endswith("/deployments"):
                deps = sorted(self.deployments) if self.deployments is not None else [self.models[0]]
                return {
                    "data": [
                        {
                            "id": d,
                            "model": d,
                            "owner": "organization-owner",
                            "status": "succeeded",
                            "created_at": 1700000000,
                            "updated_at": 1700000000,
                            "object": "deployment",
                            "scale_settings": {"scale_type": "standard"},
                        }
                        for d in deps
                    ],
                    "object": "list",
                }
            return {
                "data": [
                    {
                        "status": "succeeded",
                        "capabilities": {"fine_tune": False, "inference": True, "completion": False, "chat_completion": True, "embeddings": False},
                        "lifecycle_status": "generally-available",
                        "deprecation": {"inference": 1900000000},
                        "id": m,
                        "created_at": 1700000000,
                        "object": "model",
                    }
                    for m in self.models
                ],
                "object": "list",
            }
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "system"} for m in self.models],
        }

    def _error_payload(self, status: int, code: str | None, message: str) -> dict:
        if self.kind == "anthropic":
            return {
                "type": "error",
                "error": {"type": _anthropic_error_type(status), "message": message},
                "request_id": "req_" + _rand_id(24),
            }
        if self.kind == "azure":
            return {"error": {"message": message, "type": None, "param": None, "code": code or str(status)}}
        etype, default_code = _openai_error_type(status)
        return {"error": {"message": message, "type": etype, "param": None, "code": code if code is not None else default_code}}


# --------------------------------------------------------------------------- helpers


def _last_user_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    msgs = body.get("messages")
    if not isinstance(msgs, list):
        return ""
    for m in reversed(msgs):
        if not isinstance(m, dict) or m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(
                str(part.get("text", ""))
                for part in content
                if isinstance(part, dict) and part.get("type") in ("text", "input_text")
            )
        return ""
    return ""


def _split3(text: str) -> list[str]:
    if not text:
        return []
    n = min(3, len(text))
    step = -(-len(text) // n)
    return [text[i : i + step] for i in range(0, len(text), step)]


def _display_name(model_id: str) -> str:
    """'claude-3-5-haiku-20241022' -> 'Claude 3.5 Haiku' (date suffix dropped)."""
    words: list[str] = []
    for part in model_id.split("-"):
        if part.isdigit() and len(part) >= 8:
            continue
        if part.isdigit() and words and words[-1].replace(".", "").isdigit():
            words[-1] += "." + part
        else:
            words.append(part.capitalize())
    return " ".join(words)


def _azure_filter_results() -> dict:
    ok = {"filtered": False, "severity": "safe"}
    return {"hate": ok, "self_harm": ok, "sexual": ok, "violence": ok}


def _openai_error_type(status: int) -> tuple[str, str | None]:
    if status == 401:
        return "invalid_request_error", "invalid_api_key"
    if status == 403:
        return "invalid_request_error", None
    if status == 404:
        return "invalid_request_error", "model_not_found"
    if status == 429:
        return "requests", "rate_limit_exceeded"
    if status >= 500:
        return "server_error", None
    return "invalid_request_error", None


def _anthropic_error_type(status: int) -> str:
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        529: "overloaded_error",
    }.get(status, "api_error" if status >= 500 else "invalid_request_error")
