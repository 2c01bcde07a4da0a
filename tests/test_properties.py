"""Property-based tests (hypothesis) over the parts that take outside input.

- the request parser, over real sockets to a real server: any request head
  and body gets one well-formed HTTP/1.1 response that is not a gateway 5xx,
  or a clean close when the request was cut short; never a hang;
- the config loader: any overlay or environment gives a Config or a ConfigError;
- cache keys: dict order never matters, every output-affecting parameter
  does, transport and attribution fields do not, tenants never share;
- the rate limiter on a fake clock: never more than burst + rate x elapsed,
  Retry-After at least 1 and honest;
- the OpenAI -> Anthropic translation: system at top level, alternating
  roles, nothing lost or reordered; the usage mapping round-trips.

Example counts are small so the file runs in seconds; set
``HYPOTHESIS_PROFILE=thorough`` for a long run.
"""

import json
import os
import re
import socket
import tempfile

import pytest

from tests.tooling import require_module

require_module("hypothesis")

from hypothesis import HealthCheck, assume, given, note, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bmad.app import build_app  # noqa: E402
from bmad.gateway.cache import NON_OUTPUT_PARAMS, ResponseCache, TTLCache, canonical_json  # noqa: E402
from bmad.gateway.caching import CachePlugin  # noqa: E402
from bmad.gateway.chat import parse_chat_request  # noqa: E402
from bmad.gateway.pipeline import Call  # noqa: E402
from bmad.ops.events import NullEvents  # noqa: E402
from bmad.config import ConfigError, load, load_defaults  # noqa: E402
from bmad.errors import HTTPError  # noqa: E402
from bmad.ops.logs import JsonLogger  # noqa: E402
from bmad.ops.metrics import Registry  # noqa: E402
from bmad.providers.anthropic import from_anthropic, to_anthropic  # noqa: E402
from bmad.providers.base import ChatRequest  # noqa: E402
from bmad.http.ratelimit import Policy, RateLimiter  # noqa: E402
from bmad.service import Service  # noqa: E402
from tests.support import FakeClock, poll  # noqa: E402

settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
# The socket tests are cheap (about 20 ms an example), so they get more examples than the rest.
PARSER_EXAMPLES = settings().max_examples * 4

JSON_SCALARS = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=12)


# -- the request parser over real sockets ------------------------------------------------------

STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [^\r\n]*\r\n")
# 501 (an unsupported transfer coding) and 505 (an HTTP version we do not speak) are the client's
# doing; RFC 9110 puts them in the 5xx range.
CLIENT_FAULT_5XX = {501, 505}
NO_BODY_STATUSES = {204, 304}  # RFC 9110 section 8.6: no Content-Length, no body
PATHS = ["/bmad/health", "/bmad/tools", "/bmad/tools/analyst", "/bmad/tools/analyst/preview", "/v1/models",
         "/v1/chat/completions", "/bmad/runs", "/bmad/runs/run_0/cancel", "/bmad/workflows/greenfield-ui/runs",
         "/bmad/analytics/user/x", "/bmad/openapi.json", "/", "/bmad/ui", "/nope"]
METHODS = st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]) | st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8)
TARGETS = st.sampled_from(PATHS) | st.builds(
    lambda p, q: p + q, st.sampled_from(PATHS),
    st.text(alphabet="?&=%/.abc019~:@!$'()*+,;", max_size=30)) | st.text(max_size=40).map(lambda t: "/" + t)
VERSIONS = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1x", "http/1.1", ""])
HEADER_NAMES = st.sampled_from(["Content-Type", "Content-Length", "Transfer-Encoding", "Connection", "Expect",
                                "X-Request-ID", "X-User-ID", "Authorization", "Cache-Control", "If-None-Match",
                                "Host"]) | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                                                   min_size=0, max_size=12)
HEADER_VALUES = st.sampled_from(["application/json", "chunked", "close", "keep-alive", "100-continue", "0", "5",
                                 "-1", "1e3", "gzip, chunked", "no-store", "Bearer x", "*"]) | st.text(max_size=30)
BODIES = st.sampled_from([b"", b"{}", b'{"model":"bmad-default","messages":[{"role":"user","content":"hi"}]}',
                          b'{"input":"x"}', b"[]", b"{", b'{"a":1e999}', b'{"\\ud800":"\\udfff"}',
                          b"5\r\nhello\r\n0\r\n\r\n"]) | st.binary(
    max_size=200)


@st.composite
def raw_requests(draw):
    """A request as bytes, sometimes well formed, sometimes not in one of many ways."""
    method, target, version = draw(METHODS), draw(TARGETS), draw(VERSIONS)
    line = f"{method} {target} {version}".encode("utf-8", "surrogatepass") if draw(st.booleans()) else draw(
        st.binary(max_size=60))
    headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6))
    body = draw(BODIES)
    frame = draw(st.sampled_from(["exact", "none", "as-drawn"]))
    lines = [line]
    for name, value in headers:
        if frame == "exact" and name.lower() in ("content-length", "transfer-encoding"):
            continue
        lines.append(f"{name}: {value}".encode("utf-8", "surrogatepass"))
    if frame == "exact":
        lines.append(f"Content-Length: {len(body)}".encode())
    ending = draw(st.sampled_from([b"\r\n", b"\n"]))
    return ending.join(lines) + ending + ending + body


@pytest.fixture(scope="module")
def parser_service():
    data_dir = tempfile.mkdtemp(prefix="bmad-props-")
    config = load(environ={}, data={"server": {"host": "127.0.0.1", "port": 0, "header_timeout_seconds": 3.0,
                                               "max_body_bytes": 4096},
                                    "data_dir": data_dir, "log_level": "error", "rate_limits": {"enabled": False}})
    service = Service(build_app(config, environ={}, logger=JsonLogger("error"))).start()
    yield service
    service.stop(drain_seconds=2)


def exchange_all(port, data, timeout=5.0):
    """Send ``data``, half-close, and read until the server closes; bounded by ``timeout``.

    Returns ``(bytes received, how it ended)``: ``closed``, ``reset`` or ``timeout``.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before it has read everything
        received = bytearray()

        def ended():
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return "reset"
            except socket.timeout:
                return "timeout"
            if not chunk:
                return "closed"
            received.extend(chunk)
            return None

        how = poll(ended, timeout=timeout, interval=0) or "timeout"
        return bytes(received), how


def parse_responses(raw):
    """Split ``raw`` into (status, head, body) responses; raise AssertionError when malformed."""
    responses = []
    while raw:
        m = STATUS_LINE.match(raw)
        assert m, f"malformed status line: {raw[:120]!r}"
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, f"incomplete response head: {raw[:200]!r}"
        fields = {}
        for line in head.split(b"\r\n")[1:]:
            name, colon, value = line.partition(b":")
            assert colon, f"malformed response header {line!r}"
            assert name.lower() not in fields or name.lower() == b"set-cookie", f"duplicate header {name!r}"
            fields[name.lower()] = value.strip()
        if b"transfer-encoding" in fields:
            assert fields[b"transfer-encoding"] == b"chunked" and b"content-length" not in fields
            body_end = rest.find(b"\r\n0\r\n\r\n") + 7 if not rest.startswith(b"0\r\n\r\n") else 5
            assert body_end >= 5, f"unterminated chunked body: {rest[-80:]!r}"
            body, raw = rest[:body_end], rest[body_end:]
        elif int(m.group(1)) in NO_BODY_STATUSES:
            assert b"content-length" not in fields, f"Content-Length on a {m.group(1)}: {head!r}"
            body, raw = b"", rest
        else:
            assert b"content-length" in fields, f"no Content-Length in {head!r}"
            length = int(fields[b"content-length"])
            if STATUS_LINE.match(rest):
                length = 0  # the answer to a HEAD: Content-Length says what a GET would carry, no body follows
            body, raw = rest[:length], rest[length:]
        responses.append((int(m.group(1)), fields, body))
    return responses


@pytest.mark.slow
@settings(max_examples=PARSER_EXAMPLES)
@given(request=raw_requests())
def test_any_request_gets_a_well_formed_non_5xx_answer(parser_service, request):
    note(f"request: {request!r}")
    raw, ending = exchange_all(parser_service.port, request)
    note(f"answer: {raw[:2000]!r} ({ending})")
    assert ending != "timeout", f"the server did not close within 5 s: {request[:300]!r} -> {raw[:300]!r}"
    responses = parse_responses(raw)
    # A reset is fine once the answer is complete (the client has it); one that cuts the answer is not.
    assert ending == "closed" or responses, f"reset before any answer: {request[:300]!r}"
    for status, fields, body in responses:
        assert status < 500 or status in CLIENT_FAULT_5XX, f"{status} for {request[:300]!r}: {body[:300]!r}"
        if fields.get(b"content-type", b"").startswith(b"application/json") and body and b"0\r\n" not in body[:3]:
            json.loads(body)


# Surrogates are in the alphabet on purpose: a lone one, escaped in JSON, once made answers unencodable.
ANY_TEXT = st.text(alphabet=st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=20)


@pytest.mark.slow
@settings(max_examples=PARSER_EXAMPLES)
@given(body=st.binary(max_size=300) | JSON_VALUES.map(lambda v: json.dumps(v).encode())
       | st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=3).map(lambda v: json.dumps(v).encode()),
       path=st.sampled_from(["/v1/chat/completions", "/bmad/tools/analyst/preview", "/bmad/tools/pm/run",
                             "/bmad/workflows/greenfield-ui/runs"]))
def test_any_json_body_gets_a_4xx_or_2xx(parser_service, body, path):
    head = (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    raw, ending = exchange_all(parser_service.port, head + body)
    assert ending != "timeout", f"no close within 5 s for {body[:200]!r} to {path}"
    responses = parse_responses(raw)
    assert len(responses) == 1, raw[:300]
    status = responses[0][0]
    assert 200 <= status < 300 or 400 <= status < 500, f"{status} for {body[:200]!r} to {path}: {raw[:400]!r}"


def test_a_complete_request_is_always_answered(parser_service):
    raw, ending = exchange_all(parser_service.port, b"GET /bmad/health HTTP/1.1\r\nHost: t\r\n\r\n")
    assert ending == "closed" and parse_responses(raw)[0][0] == 200


# -- the config loader -------------------------------------------------------------------------

def _config_keys(tree, prefix=()):
    for key, value in tree.items():
        yield prefix + (key,)
        if isinstance(value, dict):
            yield from _config_keys(value, prefix + (key,))


KNOWN_KEYS = sorted(_config_keys(load_defaults()))


@st.composite
def config_overlays(draw):
    """A nested overlay: mostly real keys (with any JSON value), some unknown ones."""
    overlay = {}
    for path in draw(st.lists(st.sampled_from(KNOWN_KEYS) | st.lists(st.text(max_size=6), min_size=1,
                                                                        max_size=3).map(tuple), max_size=5)):
        node = overlay
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = draw(JSON_VALUES)
    return overlay


@pytest.mark.slow
@given(overlay=config_overlays())
def test_config_overlay_gives_config_or_config_error(overlay):
    try:
        config = load(environ={}, data=overlay)
    except ConfigError as e:
        assert str(e)
        return
    # Components validate their own sections; they too may only say ConfigError.
    for build in (lambda: RateLimiter.from_config(config, clock=FakeClock()),
                  lambda: ResponseCache.from_config(config, clock=FakeClock())):
        try:
            build()
        except ConfigError:
            pass


@given(environ=st.dictionaries(st.sampled_from(["BMAD_HOST", "BMAD_PORT", "BMAD_DATA_DIR", "BMAD_LOG_LEVEL",
                                                "BMAD_METRICS_TOKEN", "BMAD_API_KEYS", "BMAD_CATALOG_DIR"]),
                               st.text(max_size=30), max_size=7))
def test_config_environment_gives_config_or_config_error(environ):
    try:
        load(environ=environ)
    except ConfigError as e:
        assert str(e)


@given(text=st.text(max_size=200))
def test_config_file_gives_config_or_config_error(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "c.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load(config_file=str(path), environ={})
    except ConfigError as e:
        assert str(path) in str(e) or "config key" in str(e) or "unknown" in str(e)


# -- cache keys --------------------------------------------------------------------------------

class RouteKeys:
    """The part of the provider router that the cache key asks: one route per model name."""

    def route_key(self, model):
        return [["offline", model]]




def _reordered(value, rnd):
    """The same JSON value with every object's keys in another insertion order."""
    if isinstance(value, dict):
        keys = list(value)
        rnd.shuffle(keys)
        return {k: _reordered(value[k], rnd) for k in keys}
    if isinstance(value, list):
        return [_reordered(v, rnd) for v in value]
    return value


MESSAGES = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                           "content": st.text(max_size=30)},
                                          optional={"name": st.text(max_size=5)}), min_size=1, max_size=5)
OUTPUT_PARAMS = st.dictionaries(st.sampled_from(["temperature", "top_p", "seed", "max_tokens", "response_format",
                                                 "tools", "logit_bias", "x_new_param"]), JSON_VALUES, max_size=4)


def _key(cache, user, model, messages, params):
    return CachePlugin(cache, RouteKeys().route_key, NullEvents()).key(Call(ChatRequest(model, messages, params),
                                                                              user=user))


def _cache(shared=False):
    return ResponseCache(TTLCache(10, 60.0, 1000, clock=FakeClock()), shared=shared)


@pytest.mark.slow
@given(messages=MESSAGES, params=OUTPUT_PARAMS, seed=st.randoms(use_true_random=False))
def test_cache_key_ignores_dict_order(messages, params, seed):
    cache = _cache()
    assert _key(cache, "u", "m", messages, params) == _key(cache, "u", "m", _reordered(messages, seed),
                                                           _reordered(params, seed))


@pytest.mark.slow
@given(messages=MESSAGES, params=OUTPUT_PARAMS, name=st.sampled_from(["temperature", "top_p", "seed", "max_tokens",
                                                                      "tools", "x_new_param"]),
       value=JSON_VALUES)
def test_cache_key_changes_with_every_output_param(messages, params, name, value):
    assume(name not in params or canonical_json(params[name]) != canonical_json(value))
    cache = _cache()
    assert _key(cache, "u", "m", messages, params) != _key(cache, "u", "m", messages, {**params, name: value})


@pytest.mark.slow
@given(messages=MESSAGES, other=MESSAGES, params=OUTPUT_PARAMS)
def test_cache_key_changes_with_messages_and_model(messages, other, params):
    cache = _cache()
    base = _key(cache, "u", "m", messages, params)
    if canonical_json(messages) != canonical_json(other):
        assert base != _key(cache, "u", "m", other, params)
    assert base != _key(cache, "u", "m2", messages, params)


@pytest.mark.slow
@given(messages=MESSAGES, params=OUTPUT_PARAMS,
       neutral=st.dictionaries(st.sampled_from(sorted(NON_OUTPUT_PARAMS - {"messages"})),
                               JSON_VALUES, min_size=1, max_size=4))
def test_cache_key_ignores_stream_and_attribution(messages, params, neutral):
    cache = _cache()
    assert _key(cache, "u", "m", messages, params) == _key(cache, "u", "m", messages, {**params, **neutral})


def test_stream_flag_is_not_in_the_key_of_a_parsed_request():
    cache = _cache()
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.3}
    plain = parse_chat_request(dict(body))
    streamed = parse_chat_request({**body, "stream": True, "stream_options": {"include_usage": True}})
    assert _key(cache, "u", plain.model, plain.messages, plain.params) == _key(
        cache, "u", streamed.model, streamed.messages, streamed.params)


@pytest.mark.slow
@given(messages=MESSAGES, params=OUTPUT_PARAMS, a=st.text(min_size=1, max_size=10), b=st.text(min_size=1, max_size=10))
def test_cache_keys_are_scoped_per_tenant(messages, params, a, b):
    assume(a != b)
    private, shared = _cache(), _cache(shared=True)
    assert _key(private, a, "m", messages, params) != _key(private, b, "m", messages, params)
    assert _key(shared, a, "m", messages, params) == _key(shared, b, "m", messages, params)


# -- the rate limiter --------------------------------------------------------------------------

@given(per_minute=st.integers(1, 600), burst=st.integers(1, 50),
       steps=st.lists(st.tuples(st.floats(0, 5, allow_nan=False), st.integers(1, 3)), min_size=1, max_size=200))
def test_limiter_never_allows_more_than_burst_plus_refill(per_minute, burst, steps):
    clock = FakeClock(1000.0)
    limiter = RateLimiter({"api": Policy(per_minute, burst)}, clock=clock)
    start = clock()
    allowed = 0
    for dt, _ in steps:
        clock.tick(dt)
        decision = limiter.acquire("client", "api")
        elapsed = clock() - start
        if decision.allowed:
            allowed += 1
            assert decision.retry_after == 0
        else:
            assert decision.retry_after >= 1
        assert allowed <= burst + per_minute / 60.0 * elapsed + 1e-6
        assert 0 <= decision.remaining <= burst
        assert decision.reset_seconds >= 0


@given(per_minute=st.integers(1, 600), burst=st.integers(1, 20), drain=st.integers(1, 60))
def test_limiter_retry_after_is_honest(per_minute, burst, drain):
    clock = FakeClock(1000.0)
    limiter = RateLimiter({"api": Policy(per_minute, burst)}, clock=clock)
    decisions = [limiter.acquire("c", "api") for _ in range(burst + drain)]
    refused = [d for d in decisions if not d.allowed]
    assert len(decisions) - len(refused) == burst  # no time passed: exactly the burst
    retry_after = refused[-1].retry_after
    assert retry_after >= 1
    clock.tick(retry_after)
    assert limiter.acquire("c", "api").allowed, "waiting Retry-After seconds must be enough"


@given(steps=st.lists(st.floats(-30, 30, allow_nan=False), min_size=1, max_size=100))
def test_limiter_backwards_clock_mints_no_tokens(steps):
    clock = FakeClock(1000.0)
    limiter = RateLimiter({"api": Policy(60, 3)}, clock=clock)
    forward = 0.0
    allowed = 0
    for dt in steps:
        clock.tick(dt)
        forward += max(0.0, dt)
        allowed += limiter.acquire("c", "api").allowed
        assert allowed <= 3 + 1.0 * forward + 1e-6


# -- the OpenAI <-> Anthropic translation ------------------------------------------------------

TRANSLATABLE = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "developer", "user", "assistant"]),
                                               "content": st.text(max_size=20) | st.none() | st.lists(
                                                   st.fixed_dictionaries({"type": st.just("text"),
                                                                          "text": st.text(max_size=10)}),
                                                   max_size=3)}), min_size=1, max_size=12)


def _text(content):
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content)


@given(messages=TRANSLATABLE, temperature=st.none() | st.floats(0, 2), max_tokens=st.none() | st.integers(1, 10**6),
       stop=st.none() | st.text(min_size=1, max_size=5) | st.lists(st.text(max_size=5), min_size=1, max_size=4))
def test_anthropic_request_keeps_what_it_promises(messages, temperature, max_tokens, stop):
    params = {k: v for k, v in {"temperature": temperature, "max_tokens": max_tokens, "stop": stop}.items()
              if v is not None}
    body = to_anthropic(ChatRequest("m", messages, params), "claude-x")
    systems = [_text(m["content"]) for m in messages if m["role"] in ("system", "developer")]
    if systems:
        assert body["system"] == "\n\n".join(systems)
    else:
        assert "system" not in body
    roles = [m["role"] for m in body["messages"]]
    assert set(roles) <= {"user", "assistant"}
    assert all(a != b for a, b in zip(roles, roles[1:])), f"roles do not alternate: {roles}"
    # Nothing lost or reordered: each turn is the run of same-role messages it replaced, joined.
    turns = []
    for m in messages:
        if m["role"] in ("user", "assistant"):
            if turns and turns[-1][0] == m["role"]:
                turns[-1][1].append(_text(m["content"]))
            else:
                turns.append((m["role"], [_text(m["content"])]))
    assert [(r, "\n\n".join(t)) for r, t in turns] == [(m["role"], m["content"]) for m in body["messages"]]
    assert body["max_tokens"] == (max_tokens or 1024)
    if temperature is not None:
        assert body["temperature"] == min(temperature, 1.0) <= 1.0
    if stop:
        assert body["stop_sequences"] == ([stop] if isinstance(stop, str) else stop)


@given(prompt=st.integers(0, 10**9), completion=st.integers(0, 10**9), cache_read=st.integers(0, 10**6),
       cache_write=st.integers(0, 10**6), text=st.text(max_size=30),
       stop_reason=st.sampled_from(["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", None]))
def test_anthropic_usage_maps_to_openai_usage(prompt, completion, cache_read, cache_write, text, stop_reason):
    message = {"type": "message", "id": "msg_1", "model": "claude-x", "stop_reason": stop_reason,
               "content": [{"type": "text", "text": text}],
               "usage": {"input_tokens": prompt, "output_tokens": completion,
                         "cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_write}}
    reply = from_anthropic(message, created=1)
    usage = reply.body["usage"]
    assert usage == {"prompt_tokens": prompt + cache_read + cache_write, "completion_tokens": completion,
                     "total_tokens": prompt + cache_read + cache_write + completion}
    assert reply.body["choices"][0]["message"]["content"] == text
    assert reply.body["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls", "content_filter")


@given(prompt=st.integers(0, 10**9), completion=st.integers(0, 10**9))
def test_usage_round_trips_openai_anthropic_openai(prompt, completion):
    openai_usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    anthropic_message = {"type": "message", "content": [], "usage": {
        "input_tokens": openai_usage["prompt_tokens"], "output_tokens": openai_usage["completion_tokens"]}}
    assert from_anthropic(anthropic_message, created=0).body["usage"] == openai_usage


@given(messages=st.lists(st.fixed_dictionaries({"role": JSON_VALUES, "content": JSON_VALUES}), max_size=4))
def test_chat_parser_refuses_bad_messages_with_400_only(messages):
    try:
        parse_chat_request({"model": "m", "messages": messages})
    except HTTPError as e:
        assert e.status == 400
