"""Wire types shared by every provider client, and the HTTP plumbing they have in common.

``ChatRequest`` is the normalized OpenAI-style request a provider receives;
``Reply`` is a non-streamed answer in the OpenAI ``chat.completion`` shape;
``UpstreamStream`` is a streamed answer translated to OpenAI
``chat.completion.chunk`` server-sent events; ``ProviderError`` is one failed
attempt, and its ``kind`` tells the router what to do next.

A provider client (``Provider`` subclass) implements ``complete``,
``stream`` and ``check_health``; it never retries or fails over itself.
"""

import http.client
import json
import re
import socket
import time

from .pool import PoolExhausted, ResponseTooLarge
from .sse import StreamTooLarge, parse

MAX_ERROR_BYTES = 65536
_SECRETISH = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_*.\-]{6,}")
# Where providers put their own id of a request: OpenAI and compatible servers, Anthropic, Azure's gateway.
UPSTREAM_ID_HEADERS = ("x-request-id", "request-id", "apim-request-id")
_UPSTREAM_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

# Why an attempt failed; each is also a bounded metric label value.
TIMEOUT = "timeout"
CONNECTION = "connection_error"
SERVER = "server_error"
RATE_LIMITED = "rate_limited"
INVALID = "invalid_response"
TOO_LARGE = "too_large"
CLIENT = "client_error"
UNSUPPORTED = "unsupported"
POOL_FULL = "pool_full"
# Kinds that say the provider itself is in trouble (they count towards opening its circuit).
# A 429 does not: the provider is up and asks us to slow down, which its Retry-After handles.
PROVIDER_FAULTS = frozenset({TIMEOUT, CONNECTION, SERVER, INVALID, TOO_LARGE})


class ProviderError(Exception):
    """One failed attempt at one provider.

    Every kind but ``client_error`` is retryable: the router moves on to the
    next candidate. ``status``, ``type``, ``param`` and ``code`` describe an
    upstream error answer; ``retry_after`` (seconds) comes from a 429;
    ``upstream_id`` is the provider's own id of the request, when it sent one.
    """

    def __init__(self, kind, message, *, status=None, type=None, param=None, code=None, retry_after=None,
                 upstream_id=None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.retry_after = retry_after
        self.upstream_id = upstream_id

    @property
    def retryable(self):
        """True when another provider may succeed where this one failed."""
        return self.kind != CLIENT

    @property
    def provider_fault(self):
        """True when the failure counts against the provider's circuit breaker."""
        return self.kind in PROVIDER_FAULTS


class ChatRequest:
    """A normalized OpenAI-style chat request.

    ``model`` is what the caller asked for (an alias or a model name);
    ``messages`` the OpenAI messages; ``params`` every other body field that
    is forwarded (temperature, max_tokens, stop, ...); ``stream`` and
    ``include_usage`` the streaming choice; ``tool`` the catalog tool a tool
    run or workflow step is for (``{"id", "name", "role", ...}``), else None;
    ``cancel`` a ``CancelToken`` that may abort the upstream call, else None.
    """

    __slots__ = ("model", "messages", "params", "stream", "include_usage", "tool", "cancel")

    def __init__(self, model, messages, params=None, *, stream=False, include_usage=False, tool=None,
                 cancel=None):
        self.model = model
        self.messages = messages
        self.params = params or {}
        self.stream = stream
        self.include_usage = include_usage
        self.tool = tool
        self.cancel = cancel


class Reply:
    """A non-streamed answer: the OpenAI ``chat.completion`` body, its token usage, the provider's request id."""

    __slots__ = ("body", "prompt_tokens", "completion_tokens", "upstream_id")

    def __init__(self, body, prompt_tokens=0, completion_tokens=0, upstream_id=None):
        self.body = body
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.upstream_id = upstream_id


def upstream_id_of(response):
    """The provider's own id of a request, from its response headers; None when absent or not id-shaped."""
    for name in UPSTREAM_ID_HEADERS:
        value = response.header(name)
        if value and _UPSTREAM_ID.fullmatch(value):
            return value
    return None


def usage_of(usage):
    """``(prompt_tokens, completion_tokens)`` from an OpenAI ``usage`` object (0 for what is missing)."""
    if not isinstance(usage, dict):
        return 0, 0
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    return (prompt if isinstance(prompt, int) and prompt >= 0 else 0,
            completion if isinstance(completion, int) and completion >= 0 else 0)


def scrub(text, secrets=()):
    """``text`` with every configured secret and anything shaped like an API key replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _SECRETISH.sub("[redacted]", text)


class UpstreamStream:
    """A streamed upstream answer, translated to OpenAI chunk events (bytes) by ``translate``.

    ``prime()`` reads until the first event the client would get, so a
    failure up to that point can still fail over; iterating yields the
    events; ``close()`` gives the connection back (or closes it when the body
    was not read to the end). ``prompt_tokens``/``completion_tokens`` fill in
    as the upstream reports them; ``upstream_id`` is the provider's request id.
    """

    def __init__(self, provider, response, include_usage):
        self.provider = provider
        self.response = response
        self.upstream_id = upstream_id_of(response)
        self.include_usage = include_usage
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.finished = False
        self._events = parse(response.read_some, provider.spec.timeout, provider.spec.max_response_bytes)
        self._pending = []

    def translate(self, event, data):
        """Return the client events (a list of bytes) for one upstream event; subclasses implement it."""
        raise NotImplementedError

    def _next(self):
        with self.provider.translating_errors():
            return next(self._events, None)

    def prime(self):
        """Read up to the first client event; raises ``ProviderError`` when the stream fails before it."""
        while not self._pending:
            item = self._next()
            if item is None:
                raise ProviderError(INVALID, "the upstream stream ended before its first event")
            self._pending.extend(self.translate(*item))

    def __iter__(self):
        pending, self._pending = self._pending, []
        yield from pending
        while True:
            item = self._next()
            if item is None:
                break
            yield from self.translate(*item)
        if not self.finished:
            raise ProviderError(CONNECTION, "the upstream stream ended before it finished")

    def close(self):
        """Give back the connection: kept only when the stream was read to its end."""
        if self.finished:
            self.response.release()  # kept only if the body really was read to its end
        else:
            self.response.discard()


class ReplayStream:
    """Ready-made chunk events (a non-streamed answer replayed, or the offline provider's)."""

    def __init__(self, events, prompt_tokens=0, completion_tokens=0, upstream_id=None):
        self._events = events
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.upstream_id = upstream_id
        self.finished = True

    def prime(self):
        """Nothing to wait for."""

    def __iter__(self):
        return iter(self._events)

    def close(self):
        """Nothing to give back."""


class _Translating:
    """Context manager turning socket and HTTP errors into ``ProviderError``."""

    __slots__ = ("provider",)

    def __init__(self, provider):
        self.provider = provider

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if error is None or isinstance(error, ProviderError):
            return False
        spec = self.provider.spec
        if isinstance(error, (socket.timeout, TimeoutError)):
            raise ProviderError(TIMEOUT, f"no answer within {spec.timeout:g}s") from None
        if isinstance(error, ConnectionRefusedError):
            raise ProviderError(CONNECTION, f"connection refused by {spec.host}:{spec.port}") from None
        if isinstance(error, PoolExhausted):
            raise ProviderError(POOL_FULL, str(error)) from None
        if isinstance(error, StreamTooLarge):
            raise ProviderError(TOO_LARGE, str(error)) from None
        if isinstance(error, ResponseTooLarge):
            raise ProviderError(TOO_LARGE, f"{error} (max_response_bytes)") from None
        if isinstance(error, http.client.IncompleteRead):
            raise ProviderError(CONNECTION, "the upstream closed the connection mid-response") from None
        if isinstance(error, (OSError, http.client.HTTPException)):
            detail = type(error).__name__ if not str(error) else f"{type(error).__name__}: {error}"
            raise ProviderError(CONNECTION, scrub(detail)[:200]) from None
        return False


class Provider:
    """A provider client. Subclasses set ``type``/``default_model`` and implement the calls.

    Methods for the caller: ``accepts(model)``, ``complete(chat, model, request_id=None)``
    -> ``Reply``, ``stream(chat, model, request_id=None)`` -> a stream with
    ``prime()``, iteration and ``close()``, ``check_health()`` -> the model
    ids it lists. ``request_id`` (the caller's) goes upstream as ``X-Request-ID``.
    """

    type = "base"
    default_model = None

    def __init__(self, spec, pool=None, clock=time.time):
        self.spec = spec
        self.name = spec.name
        self.clock = clock
        self.http = None
        if spec.host and pool is not None:
            self.http = pool.add_host(spec.name, spec.scheme, spec.host, spec.port,
                                      max_connections=spec.max_connections,
                                      connect_timeout=spec.connect_timeout, read_timeout=spec.timeout)

    def accepts(self, model):
        """True when this provider serves ``model`` (one with no ``models`` list serves any; entries may be patterns)."""
        return self.spec.models is None or self.spec.listed(model) is not None

    def translating_errors(self):
        """A context that turns socket/HTTP errors into ``ProviderError``."""
        return _Translating(self)

    # -- plumbing for subclasses ----------------------------------------------------------------

    def call_headers(self, request_id=None):
        """``headers()`` for a chat call, with the caller's request id so both sides' logs line up."""
        headers = self.headers()
        if request_id:
            headers["X-Request-ID"] = request_id
        return headers

    def _send(self, method, path, payload, headers, cancel=None):
        with self.translating_errors():
            return self.http.request(method, path, payload, headers, timeout=self.spec.timeout, cancel=cancel)

    def _post_json(self, path, body, headers, cancel=None):
        """POST ``body``; ``(parsed JSON answer of a 2xx, the provider's request id)``, else ``ProviderError``."""
        deadline = time.monotonic() + self.spec.timeout
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        response = self._send("POST", path, payload, headers, cancel)
        return self._read_json(response, deadline), upstream_id_of(response)

    def _get_json(self, path, headers):
        deadline = time.monotonic() + self.spec.timeout
        return self._read_json(self._send("GET", path, None, headers), deadline)

    def _read_json(self, response, deadline):
        if response.status >= 300:
            raise self._failure(response)
        with self.translating_errors():
            raw = response.read_all(self.spec.max_response_bytes, deadline)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ProviderError(INVALID, f"the upstream answered {response.status} with a body that is not JSON",
                                upstream_id=upstream_id_of(response)) from None
        if not isinstance(data, dict):
            raise ProviderError(INVALID, "the upstream answered with JSON that is not an object",
                                upstream_id=upstream_id_of(response))
        return data

    def _failure(self, response):
        """The ``ProviderError`` for a non-2xx answer (its body read, capped, and the connection freed)."""
        status = response.status
        try:
            raw = response.read_all(MAX_ERROR_BYTES, time.monotonic() + min(self.spec.timeout, 10.0))
        except (OSError, http.client.HTTPException, ResponseTooLarge):
            raw = b""
        message, etype, param, code = self._error_fields(raw)
        message = scrub(message or f"HTTP {status}", self.spec.secrets)[:500]
        upstream_id = upstream_id_of(response)
        if status == 429:
            return ProviderError(RATE_LIMITED, message, status=status, type=etype, code=code,
                                 retry_after=_retry_after(response.header("Retry-After")), upstream_id=upstream_id)
        if status in (408, 409) or status >= 500:
            return ProviderError(SERVER, message, status=status, type=etype, code=code, upstream_id=upstream_id)
        if 300 <= status < 400:
            return ProviderError(INVALID, f"unexpected redirect (HTTP {status})", status=status,
                                 upstream_id=upstream_id)
        return ProviderError(CLIENT, message, status=status, type=etype, param=param, code=code,
                             upstream_id=upstream_id)

    def _error_fields(self, raw):
        """``(message, type, param, code)`` from an OpenAI-shaped error body."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return raw[:200].decode("utf-8", "replace").strip(), None, None, None
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            return (_text(error.get("message")), _token(error.get("type")), _text(error.get("param")),
                    _token(error.get("code")))
        if isinstance(error, str):
            return error, None, None, None
        return None, None, None, None


def _text(value):
    return value if isinstance(value, str) else None


def _token(value):
    """An upstream type/code worth passing on: a short identifier, else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", value):
        return value
    return None


def _retry_after(value):
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit alone takes '²' (latin-1 0xB2), which float() refuses
        return float(value)
    try:
        from email.utils import parsedate_to_datetime
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None
