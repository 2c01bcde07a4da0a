"""The response cache and de-duplication in front of chat completions and tool runs.

``chat(handler)`` and ``tool_run(handler)`` wrap the provider router's own
handlers (see the route table), so the uncached way through stays theirs:

* ``Cache-Control: no-store`` (or ``cache.enabled`` false): the handler runs
  untouched; ``X-Cache: BYPASS`` (no header at all when the cache is off).
* ``Cache-Control: no-cache`` (or ``Pragma: no-cache``): no lookup; the
  handler runs and its answer refreshes the entry; ``X-Cache: MISS``.
* otherwise a lookup: ``X-Cache: HIT`` with ``Age`` (whole seconds) and
  ``X-BMAD-Attempts: 0``, or ``MISS`` and the handler runs.

Only 200 answers that are not streams are stored; errors never are. A miss
that is not a stream goes through ``app.dedup``, so identical concurrent
misses share one upstream call (the others get ``X-Dedup: coalesced``). A
streamed request whose answer is cached is answered as an SSE stream built
from the cached ``chat.completion``; a streamed miss is passed through
uncached (a partial stream must never be stored).
"""

import json

from .completions import parse_chat_request
from ..handlers.openai_api import SSE_TYPE, STREAM_HEADERS
from ..catalog.prompts import run_messages
from ..http.request import Response, json_response

BYPASS, MISS, HIT = "BYPASS", "MISS", "HIT"
DEFAULT, NO_CACHE, NO_STORE = "default", "no-cache", "no-store"
# Cached headers replayed on a hit; the rest belong to the request that made the answer.
KEPT_HEADER_PREFIX = "X-BMAD-"
CONTENT_PIECE_CHARS = 4096


def cache_mode(headers):
    """``no-store``, ``no-cache`` or ``default`` from the request's Cache-Control (and HTTP/1.0 Pragma)."""
    directives = {d.strip().split("=", 1)[0].lower() for d in headers.get("cache-control", "").split(",")}
    if "no-store" in directives:
        return NO_STORE
    if "no-cache" in directives or "no-cache" in headers.get("pragma", "").lower():
        return NO_CACHE
    return DEFAULT


def chat(handler):
    """Wrap the ``POST /v1/chat/completions`` handler with the cache and de-duplication."""
    def cached_chat_completions(req):
        return _serve(req, handler, _chat_key)
    cached_chat_completions.__doc__ = handler.__doc__
    return cached_chat_completions


def tool_run(handler):
    """Wrap the ``POST /bmad/tools/{tool_id}/run`` handler with the cache and de-duplication."""
    def cached_tool_run(req):
        return _serve(req, handler, _tool_key)
    cached_tool_run.__doc__ = handler.__doc__
    return cached_tool_run


def _chat_key(req, cache):
    """``(key, chat request or None)`` for a chat body; the validation errors are the handler's own."""
    parsed = parse_chat_request(req.json())
    material = req.app.completions.cache_material(parsed)
    key = cache.key_for(cache.scope_for(req.user), material["route"], material["messages"], material["params"])
    return key, parsed


def _tool_key(req, cache):
    body = req.json()
    if body.get("stream") is not None and body.get("stream") is not False:  # identity: 0 == False
        return None, None  # the handler refuses it; nothing to look up
    app = req.app
    tool = app.catalog.tool(req.params["tool_id"])
    _, _, messages = run_messages(tool, body)
    route = {"tool": tool["id"], "route": app.llm.route_key(app.completions.tool_model(tool["id"], body.get("model")))}
    return cache.key_for(cache.scope_for(req.user), route, messages, {}), None


def _serve(req, handler, key_of):
    cache = req.app.response_cache
    if not cache.enabled:
        return handler(req)
    mode = cache_mode(req.headers)
    if mode == NO_STORE:
        req.response_headers["X-Cache"] = BYPASS
        return handler(req)
    key, parsed = key_of(req, cache)
    if key is None:
        return handler(req)
    streaming = parsed is not None and parsed.stream
    if mode == DEFAULT:
        found = cache.lookup(key)
        if found is not None:
            req.response_headers["X-Cache"] = HIT
            req.app.events.record("cache_hit", user_id=req.user, route=req.route.template,
                                  tool=req.params.get("tool_id"))
            return _replay(found, parsed if streaming else None)
    req.response_headers["X-Cache"] = MISS
    if streaming:
        return handler(req)
    answer, coalesced = req.app.dedup.do(key, lambda: _lead(req, handler, cache, key))
    status, body, headers, content_type = answer
    if coalesced:
        headers["X-Dedup"] = "coalesced"
    return Response(status, body, headers, content_type)


def _lead(req, handler, cache, key):
    """Run the handler once for everyone waiting on ``key``; store a 200 answer."""
    response = handler(req)
    if not isinstance(response, Response):
        response = json_response(response)
    if response.stream is not None:  # not expected from a non-streamed request: pass it on, never share it
        raise RuntimeError("a non-streamed request was answered with a stream")
    if response.status == 200:
        kept = {k: v for k, v in response.headers.items() if k.startswith(KEPT_HEADER_PREFIX)}
        cache.store(key, response.body, kept)
    return response.status, response.body, dict(response.headers), response.content_type


def _replay(found, streamed_chat):
    headers = dict(found.headers)
    if "X-BMAD-Attempts" in headers:
        headers["X-BMAD-Attempts"] = "0"  # no provider was asked
    headers["Age"] = str(found.age)
    if streamed_chat is None:
        return Response(200, found.body, headers)
    completion = json.loads(found.body)
    return Response(200, headers={**STREAM_HEADERS, **headers}, content_type=SSE_TYPE,
                    stream=sse_events(completion, include_usage=streamed_chat.include_usage))


def _event(obj):
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n\n"


def sse_events(completion, *, include_usage=False):
    """Yield a ``chat.completion`` as the SSE events of the stream that would have produced it.

    Per choice: a role chunk, its content in pieces, its tool calls, a final
    chunk with ``finish_reason``; then the usage chunk (``choices: []``) when
    ``include_usage``, and ``data: [DONE]`` - the OpenAI streaming shape.
    """
    base = {"id": completion.get("id", ""), "object": "chat.completion.chunk",
            "created": completion.get("created", 0), "model": completion.get("model", "")}
    if completion.get("system_fingerprint") is not None:
        base["system_fingerprint"] = completion["system_fingerprint"]
    if include_usage:
        base["usage"] = None

    def chunk(index, delta, finish_reason=None):
        return _event({**base, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                            "finish_reason": finish_reason}]})

    for position, choice in enumerate(completion.get("choices") or ()):
        index = choice.get("index", position)
        message = choice.get("message") or {}
        yield chunk(index, {"role": message.get("role", "assistant"), "content": ""})
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        for start in range(0, len(content or ""), CONTENT_PIECE_CHARS):
            yield chunk(index, {"content": content[start:start + CONTENT_PIECE_CHARS]})
        if message.get("refusal"):
            yield chunk(index, {"refusal": message["refusal"]})
        for n, call in enumerate(message.get("tool_calls") or ()):
            yield chunk(index, {"tool_calls": [{"index": n, **call}]})
        yield chunk(index, {}, choice.get("finish_reason") or "stop")
    if include_usage:
        yield _event({**base, "choices": [], "usage": completion.get("usage")})
    yield b"data: [DONE]\n\n"
