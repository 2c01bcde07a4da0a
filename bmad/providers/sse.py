"""Server-sent events, the one home for them: encode, parse and replay.

``event(obj)`` encodes one ``data:`` event; ``DONE`` ends an OpenAI stream;
``chunk_event`` builds one ``chat.completion.chunk``; ``parse`` reads
``(event, data)`` pairs from an upstream body as it arrives; ``replay``
turns a whole ``chat.completion`` into the stream that would have produced
it: every choice, its content, refusal and tool calls, the finish reason and
(when asked) the usage chunk.
"""

import json

DONE = b"data: [DONE]\n\n"
MAX_EVENT_BYTES = 1024 * 1024
CONTENT_PIECE_CHARS = 4096
_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class StreamTooLarge(Exception):
    """An upstream stream or one of its events is over its byte limit."""


def event(obj, name=None):
    """One SSE event carrying ``obj`` as JSON (with an ``event:`` line when ``name`` is given)."""
    data = b"data: " + _DUMPS(obj).encode("utf-8") + b"\n\n"
    return b"event: " + name.encode("ascii") + b"\n" + data if name else data


def chunk_event(chunk_id, created, model, delta=None, finish_reason=None, usage=None, index=0):
    """One OpenAI ``chat.completion.chunk`` event; a usage-only chunk when ``delta`` is None."""
    body = {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model}
    if delta is None:
        body["choices"] = []
        body["usage"] = usage
    else:
        body["choices"] = [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    return event(body)


def parse(read_some, timeout, limit):
    """Yield ``(event, data)`` byte pairs from an SSE body; ``read_some(timeout)`` gives its next bytes.

    Raises ``StreamTooLarge`` past ``limit`` bytes in all or ``MAX_EVENT_BYTES`` in one event.
    """
    buf = b""
    total = 0
    while True:
        chunk = read_some(timeout)
        if not chunk:
            return
        total += len(chunk)
        if total > limit:
            raise StreamTooLarge(f"the upstream stream is larger than {limit} bytes")
        buf += chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        while True:
            end = buf.find(b"\n\n")
            if end < 0:
                break
            block, buf = buf[:end], buf[end + 2:]
            name, data = None, []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[6:] if line[5:6] == b" " else line[5:])
                elif line.startswith(b"event:"):
                    name = line[6:].strip()
            if data or name:
                yield name, b"\n".join(data)
        if len(buf) > MAX_EVENT_BYTES:
            raise StreamTooLarge(f"an upstream event is larger than {MAX_EVENT_BYTES} bytes")


def _text_of(content):
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def replay(completion, *, include_usage=False):
    """Yield a ``chat.completion`` as the SSE events of the stream that would have produced it.

    Per choice: a role chunk, its content in pieces, its refusal, its tool
    calls (ids kept), a final chunk with ``finish_reason``; then the usage
    chunk (``choices: []``) when ``include_usage``, and ``data: [DONE]``.
    """
    base = {"id": completion.get("id", ""), "object": "chat.completion.chunk",
            "created": completion.get("created", 0), "model": completion.get("model", "")}
    if completion.get("system_fingerprint") is not None:
        base["system_fingerprint"] = completion["system_fingerprint"]
    if include_usage:
        base["usage"] = None

    def chunk(index, delta, finish_reason=None):
        return event({**base, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                           "finish_reason": finish_reason}]})

    for position, choice in enumerate(completion.get("choices") or ()):
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", position)
        message = choice.get("message") or {}
        yield chunk(index, {"role": message.get("role", "assistant"), "content": ""})
        content = _text_of(message.get("content"))
        for start in range(0, len(content), CONTENT_PIECE_CHARS):
            yield chunk(index, {"content": content[start:start + CONTENT_PIECE_CHARS]})
        if message.get("refusal"):
            yield chunk(index, {"refusal": message["refusal"]})
        for n, call in enumerate(message.get("tool_calls") or ()):
            if isinstance(call, dict):
                yield chunk(index, {"tool_calls": [{"index": n, **call}]})
        yield chunk(index, {}, choice.get("finish_reason") or "stop")
    if include_usage:
        yield event({**base, "choices": [], "usage": completion.get("usage")})
    yield DONE
