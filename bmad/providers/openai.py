"""The OpenAI chat completions client; also any OpenAI-compatible server (vLLM, Ollama, LM Studio, llama.cpp).

``POST {base_url}/chat/completions`` with ``Authorization: Bearer``; health
is ``GET {base_url}/models``. Requests and answers are already in the shape
the gateway speaks, so they pass through; a stream asks for
``stream_options.include_usage`` so its tokens can be counted, and drops the
usage-only chunk again when the caller did not ask for it.
"""

import json
import time

from .. import __version__
from .base import INVALID, SERVER, Provider, ProviderError, ReplayStream, Reply, UpstreamStream, upstream_id_of, usage_of
from .sse import DONE, replay


class OpenAIStream(UpstreamStream):
    """An OpenAI-format event stream, passed through as it arrives."""

    def translate(self, event, data):
        """Pass each chunk on; note usage; end at ``[DONE]``."""
        if data == b"[DONE]":
            self.finished = True
            return [DONE]
        if data.startswith(b'{"error"'):
            raise ProviderError(SERVER, _stream_error(data))
        if b'"usage"' in data:
            try:
                chunk = json.loads(data)
            except (ValueError, UnicodeDecodeError):
                raise ProviderError(INVALID, "the upstream sent a stream event that is not JSON") from None
            if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
                self.prompt_tokens, self.completion_tokens = usage_of(chunk["usage"])
                if not chunk.get("choices") and not self.include_usage:
                    return []  # the usage chunk we asked for on our own account
        return [b"data: " + data + b"\n\n"]


def _stream_error(data):
    try:
        error = json.loads(data).get("error") or {}
        return str(error.get("message") or "the upstream reported an error mid-stream")[:300]
    except (ValueError, AttributeError):
        return "the upstream reported an error mid-stream"


class OpenAIProvider(Provider):
    """A client of the OpenAI chat completions API."""

    type = "openai"
    default_model = "gpt-4o-mini"

    def chat_path(self, model):
        """The request path of a chat completion."""
        return self.spec.base_path + "/chat/completions"

    def models_path(self):
        """The request path of the models list (the health check)."""
        return self.spec.base_path + "/models"

    def headers(self):
        """Request headers, with the credentials."""
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": f"bmad-api/{__version__}"}
        if self.spec.api_key:
            headers["Authorization"] = f"Bearer {self.spec.api_key}"
        return headers

    def body(self, chat, model, stream):
        """The upstream request body."""
        body = {"model": model, "messages": chat.messages}
        body.update(chat.params)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def complete(self, chat, model, request_id=None):
        """One non-streamed chat completion."""
        data, upstream_id = self._post_json(self.chat_path(model), self.body(chat, model, False),
                                            self.call_headers(request_id), chat.cancel)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ProviderError(INVALID, "the upstream answer has no choices", upstream_id=upstream_id)
        prompt, completion = usage_of(data.get("usage"))
        return Reply(data, prompt, completion, upstream_id)

    def stream(self, chat, model, request_id=None):
        """A streamed chat completion (not yet primed)."""
        payload = json.dumps(self.body(chat, model, True), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        headers = self.call_headers(request_id)
        headers["Accept"] = "text/event-stream"
        response = self._send("POST", self.chat_path(model), payload, headers, chat.cancel)
        if response.status >= 300:
            raise self._failure(response)
        if "text/event-stream" not in (response.header("Content-Type") or ""):
            # Some compatible servers answer a stream request with one JSON body: replay it.
            reply = self._read_reply(response)
            return ReplayStream(list(replay(reply.body, include_usage=chat.include_usage)), reply.prompt_tokens,
                                reply.completion_tokens, reply.upstream_id)
        return OpenAIStream(self, response, chat.include_usage)

    def _read_reply(self, response):
        data = self._read_json(response, time.monotonic() + self.spec.timeout)
        if not isinstance(data.get("choices"), list) or not data["choices"]:
            raise ProviderError(INVALID, "the upstream answered a stream request with something else")
        prompt, completion = usage_of(data.get("usage"))
        return Reply(data, prompt, completion, upstream_id_of(response))

    def check_health(self):
        """List the upstream's models (spends no tokens); raises ``ProviderError`` when it fails."""
        headers = self.headers()
        del headers["Content-Type"]
        data = self._get_json(self.models_path(), headers)
        return _model_ids(data)


def _model_ids(data):
    items = data.get("data")
    if not isinstance(items, list):
        raise ProviderError(INVALID, "the models list has no 'data' array")
    return [item["id"] for item in items[:1000] if isinstance(item, dict) and isinstance(item.get("id"), str)]
