"""The Anthropic Messages API client, translating to and from the OpenAI shapes.

``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version:
2023-06-01``. Going out: system (and developer) messages move to the
top-level ``system`` field, consecutive messages of one role are merged,
``max_tokens`` is required (default 1024), ``stop`` becomes
``stop_sequences`` and ``temperature`` is capped at Anthropic's 1.0. Coming
back: text content blocks are joined, ``usage.input_tokens``/``output_tokens``
become prompt/completion tokens (cache reads and writes count as prompt
tokens), ``stop_reason`` becomes ``finish_reason``. The event stream
(``message_start``, ``content_block_delta``, ``message_delta``,
``message_stop``) becomes OpenAI ``chat.completion.chunk`` events.

OpenAI features with no translation here (tools, ``n`` > 1, logprobs,
response formats) make this provider step aside (``unsupported``) so the
router can try another.
"""

import json

from .. import __version__
from .base import INVALID, SERVER, UNSUPPORTED, Provider, ProviderError, Reply, UpstreamStream
from .sse import DONE, chunk_event

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "refusal": "content_filter", "pause_turn": "stop", "model_context_window_exceeded": "length"}
UNTRANSLATABLE = ("tools", "tool_choice", "functions", "function_call", "response_format", "logprobs",
                  "top_logprobs", "audio", "modalities", "prediction")


def _unsupported(what):
    return ProviderError(UNSUPPORTED, f"{what} cannot be translated for an Anthropic provider")


def _content(index, content):
    """``(text, blocks)``: plain text, or Anthropic content blocks when there are images."""
    if content is None:
        return "", None
    if isinstance(content, str):
        return content, None
    if not isinstance(content, list):
        raise _unsupported(f"messages[{index}].content of this type")
    blocks = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "input_text") and isinstance(part.get("text"), str):
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            url = part.get("image_url", {}).get("url", "") if isinstance(part.get("image_url"), dict) else ""
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
            elif url.startswith(("http://", "https://")):
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
            else:
                raise _unsupported(f"messages[{index}].content image_url")
        else:
            raise _unsupported(f"messages[{index}].content part of type {kind!r}")
    if all(b["type"] == "text" for b in blocks):
        return "".join(b["text"] for b in blocks), None
    return None, blocks


def to_anthropic(chat, model, stream=False):
    """The Anthropic Messages request body for an OpenAI-style ``ChatRequest``."""
    system = []
    messages = []
    for i, message in enumerate(chat.messages):
        role = message.get("role")
        if message.get("tool_calls") or message.get("function_call"):
            raise _unsupported(f"messages[{i}].tool_calls")
        text, blocks = _content(i, message.get("content"))
        if role in ("system", "developer"):
            if blocks is not None:
                raise _unsupported(f"messages[{i}]: an image in a system message")
            system.append(text)
            continue
        if role not in ("user", "assistant"):
            raise _unsupported(f"messages[{i}] with role {role!r}")
        if messages and messages[-1]["role"] == role:
            previous = messages[-1]
            if blocks is None and isinstance(previous["content"], str):
                previous["content"] += "\n\n" + text
                continue
            previous["content"] = _as_blocks(previous["content"]) + (blocks or _as_blocks(text))
            continue
        messages.append({"role": role, "content": text if blocks is None else blocks})
    params = chat.params
    for name in UNTRANSLATABLE:
        if params.get(name) not in (None, False):
            raise _unsupported(f"the '{name}' parameter")
    if params.get("n") not in (None, 1):
        raise _unsupported("n greater than 1")
    max_tokens = params.get("max_completion_tokens") or params.get("max_tokens") or DEFAULT_MAX_TOKENS
    body = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system:
        body["system"] = "\n\n".join(system)
    if params.get("temperature") is not None:
        body["temperature"] = min(float(params["temperature"]), 1.0)
    if params.get("top_p") is not None:
        body["top_p"] = params["top_p"]
    stop = params.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(params.get("user"), str):
        body["metadata"] = {"user_id": params["user"][:256]}
    if stream:
        body["stream"] = True
    return body


def _as_blocks(content):
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _prompt_tokens(usage):
    total = 0
    for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        value = usage.get(key)
        if isinstance(value, int) and value > 0:
            total += value
    return total


def from_anthropic(data, created):
    """A ``Reply`` in the OpenAI ``chat.completion`` shape for an Anthropic message."""
    content = data.get("content")
    if data.get("type") != "message" or not isinstance(content, list):
        raise ProviderError(INVALID, "the upstream answer is not an Anthropic message")
    text = "".join(block.get("text", "") for block in content
                   if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str))
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    prompt = _prompt_tokens(usage)
    completion = usage.get("output_tokens") if isinstance(usage.get("output_tokens"), int) else 0
    body = {"id": f"chatcmpl-{data.get('id', '')}", "object": "chat.completion", "created": created,
            "model": data.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": None, "finish_reason": FINISH_REASONS.get(data.get("stop_reason"), "stop")}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}}
    return Reply(body, prompt, completion)


class AnthropicStream(UpstreamStream):
    """Anthropic's event stream translated into OpenAI chunk events."""

    def __init__(self, provider, response, include_usage, model):
        super().__init__(provider, response, include_usage)
        self.chunk_id = "chatcmpl-anthropic"
        self.model = model
        self.created = int(provider.clock())

    def translate(self, event, data):
        """One Anthropic event -> the OpenAI chunk events it stands for."""
        try:
            payload = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise ProviderError(INVALID, "the upstream sent a stream event that is not JSON") from None
        kind = payload.get("type") if isinstance(payload, dict) else None
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [chunk_event(self.chunk_id, self.created, self.model, {"content": delta["text"]})]
            return []
        if kind == "message_start":
            message = payload.get("message") or {}
            self.chunk_id = f"chatcmpl-{message.get('id', 'anthropic')}"
            self.model = message.get("model") or self.model
            usage = message.get("usage") or {}
            self.prompt_tokens = _prompt_tokens(usage)
            if isinstance(usage.get("output_tokens"), int):
                self.completion_tokens = usage["output_tokens"]
            return [chunk_event(self.chunk_id, self.created, self.model, {"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = payload.get("content_block") or {}
            if block.get("type") == "text" and block.get("text"):
                return [chunk_event(self.chunk_id, self.created, self.model, {"content": block["text"]})]
            return []
        if kind == "message_delta":
            usage = payload.get("usage") or {}
            if isinstance(usage.get("output_tokens"), int):
                self.completion_tokens = usage["output_tokens"]  # cumulative, per Anthropic's docs
            if _prompt_tokens(usage):
                self.prompt_tokens = _prompt_tokens(usage)
            reason = (payload.get("delta") or {}).get("stop_reason")
            return [chunk_event(self.chunk_id, self.created, self.model, {}, FINISH_REASONS.get(reason, "stop"))]
        if kind == "message_stop":
            self.finished = True
            events = []
            if self.include_usage:
                events.append(chunk_event(self.chunk_id, self.created, self.model, usage={
                    "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                    "total_tokens": self.prompt_tokens + self.completion_tokens}))
            events.append(DONE)
            return events
        if kind == "error":
            error = payload.get("error") or {}
            raise ProviderError(SERVER, str(error.get("message") or error.get("type") or "stream error")[:300])
        return []  # ping, content_block_stop, and event types added later


class AnthropicProvider(Provider):
    """A client of the Anthropic Messages API."""

    type = "anthropic"
    default_model = "claude-haiku-4-5"

    def headers(self):
        """Request headers, with the credentials and API version."""
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "anthropic-version": API_VERSION, "User-Agent": f"bmad-api/{__version__}"}
        if self.spec.api_key:
            headers["x-api-key"] = self.spec.api_key
        return headers

    def complete(self, chat, model, request_id=None):
        """One non-streamed message, answered in the OpenAI shape."""
        data, upstream_id = self._post_json(self.spec.base_path + "/v1/messages", to_anthropic(chat, model),
                                            self.call_headers(request_id), chat.cancel)
        reply = from_anthropic(data, int(self.clock()))
        reply.upstream_id = upstream_id
        return reply

    def stream(self, chat, model, request_id=None):
        """A streamed message, translated to OpenAI chunks (not yet primed)."""
        payload = json.dumps(to_anthropic(chat, model, stream=True), separators=(",", ":"),
                             ensure_ascii=False).encode("utf-8")
        headers = self.call_headers(request_id)
        headers["Accept"] = "text/event-stream"
        response = self._send("POST", self.spec.base_path + "/v1/messages", payload, headers, chat.cancel)
        if response.status >= 300:
            raise self._failure(response)
        if "text/event-stream" not in (response.header("Content-Type") or ""):
            response.discard()
            raise ProviderError(INVALID, "the upstream answered a stream request without an event stream")
        return AnthropicStream(self, response, chat.include_usage, model)

    def check_health(self):
        """List the models (spends no tokens); raises ``ProviderError`` when it fails."""
        headers = self.headers()
        del headers["Content-Type"]
        data = self._get_json(self.spec.base_path + "/v1/models", headers)
        items = data.get("data")
        if not isinstance(items, list):
            raise ProviderError(INVALID, "the models list has no 'data' array")
        return [item["id"] for item in items[:1000] if isinstance(item, dict) and isinstance(item.get("id"), str)]
