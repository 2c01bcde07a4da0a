"""The request a handler receives and the response it returns."""

import json
import math
import re
from urllib.parse import parse_qs

from ..errors import BadRequest, LengthRequired, UnsupportedMediaType

JSON_TYPE = "application/json"
# A \ud800-\udfff escape that is not half of a pair parses to a lone surrogate, which no UTF-8
# encoder takes (RFC 8259 section 8.2 leaves such strings undefined; I-JSON, RFC 7493, forbids them).
SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")


def json_depth_exceeds(value, limit, text=None):
    """True when ``value`` nests lists/objects deeper than ``limit``.

    ``text``, the JSON it was parsed from, lets a body with at most ``limit``
    brackets (each level needs one) skip the walk.
    """
    if isinstance(text, (bytes, bytearray)) and text.count(b"[") + text.count(b"{") <= limit:
        return False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))
    return False


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text):
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def loads_strict(data):
    """``json.loads`` as RFC 8259 has it: NaN, Infinity and numbers that overflow to infinity are errors."""
    return json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)


class Request:
    """One parsed HTTP request, as handlers see it.

    ``params`` holds the route's path parameters, ``principal`` the
    authenticated caller, ``app`` the services the handler may use, and
    ``response_headers`` headers that guards want on whatever response is sent.
    """

    __slots__ = ("method", "path", "query_string", "headers", "body", "params", "request_id",
                 "client_ip", "principal", "app", "route", "started", "response_headers",
                 "max_json_depth", "_query", "_json", "context")

    def __init__(self, method, path, query_string, headers, body=b"", *, client_ip="", request_id="",
                 app=None, started=0.0, max_json_depth=64):
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.body = body
        self.params = {}
        self.request_id = request_id
        self.client_ip = client_ip
        self.principal = None
        self.app = app
        self.route = None
        self.started = started
        self.response_headers = {}
        self.max_json_depth = max_json_depth
        self.context = {}
        self._query = None
        self._json = None

    @property
    def user(self):
        """The caller's user id (``anonymous`` before authentication)."""
        return self.principal.user if self.principal else "anonymous"

    @property
    def query(self):
        """Query parameters as a dict of the last value given for each name."""
        if self._query is None:
            try:
                pairs = parse_qs(self.query_string, keep_blank_values=True, strict_parsing=False,
                                 max_num_fields=100)
            except ValueError:
                raise BadRequest("too many query parameters") from None
            self._query = {k: v[-1] for k, v in pairs.items()}
        return self._query

    def json(self):
        """The body parsed as a JSON object; 411 without a length, 415 when not JSON, 400 when malformed."""
        if self._json is None:
            if not self.context.get("framed", True):
                raise LengthRequired("this request needs a JSON body with a Content-Length")
            ctype = self.headers.get("content-type", "")
            if ctype.split(";", 1)[0].strip().lower() != JSON_TYPE:
                raise UnsupportedMediaType(f"the body must be JSON (Content-Type: {JSON_TYPE}), got {ctype or 'none'!r}")
            try:
                value = loads_strict(self.body)
            except RecursionError:
                raise BadRequest("the JSON body is nested too deeply") from None
            except (ValueError, UnicodeDecodeError) as e:
                raise BadRequest(f"the body is not valid JSON: {e}") from None
            if not isinstance(value, dict):
                raise BadRequest("the JSON body must be an object")
            if SURROGATE_ESCAPE.search(self.body) and not _is_utf8_text(value):
                raise BadRequest("the JSON body has a \\u escape of a lone surrogate (\\ud800-\\udfff) in a string")
            if json_depth_exceeds(value, self.max_json_depth, self.body):
                raise BadRequest(f"the JSON body is nested deeper than {self.max_json_depth} levels")
            self._json = value
        return self._json


class Response:
    """What a handler returns: a status, headers and a body or a stream of chunks.

    ``stream`` is an iterable of bytes sent with chunked transfer encoding,
    each chunk flushed as it is produced.
    """

    __slots__ = ("status", "body", "headers", "content_type", "stream")

    def __init__(self, status=200, body=b"", headers=None, content_type=JSON_TYPE, stream=None):
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.content_type = content_type
        self.stream = stream


# What json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str) builds per call, built once.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
_encode_ascii = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=str).encode


def _is_utf8_text(value):
    try:
        _encode(value).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def dumps(obj):
    """Encode ``obj`` as compact UTF-8 JSON."""
    text = _encode(obj)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: \u escapes keep the JSON valid and the bytes UTF-8
        return _encode_ascii(obj).encode("ascii")


def json_response(obj, status=200, headers=None):
    """A JSON response."""
    return Response(status, dumps(obj), headers)
