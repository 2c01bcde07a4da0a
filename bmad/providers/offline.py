"""The built-in offline provider: every endpoint works on a fresh machine with no keys.

It calls no language model. Its answer is deterministic text built from the
tool's role and the input, and it says plainly that no model was called;
``provider`` and ``model`` are ``offline`` and the cost is 0. It streams
too, as OpenAI chunk events, so streaming clients work against it. It is the
provider only when no other is configured, or when listed explicitly.
"""

import hashlib
import json

from .base import Provider, ReplayStream, Reply
from .sse import DONE, chunk_event

NOTICE = ("> **Offline mode: no language model was called.** This answer was assembled by bmad-api's "
          "built-in offline provider from the request alone, so it is a placeholder, not an analysis. "
          "Configure a provider (OPENAI_API_KEY, ANTHROPIC_API_KEY, AZURE_OPENAI_* or the `providers` "
          "setting) for real answers.")
EXCERPT_CHARS = 400


def _text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _excerpt(text):
    text = text.strip()
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS].rstrip() + " [...]"


def offline_text(chat):
    """The deterministic answer for ``chat``: who would answer, what they got, and what a real run gives."""
    tool = chat.tool or {}
    role = tool.get("role") or "General assistant"
    title = tool.get("name") or "Chat"
    user = [_text_of(m.get("content")) for m in chat.messages if m.get("role") == "user"]
    lines = [NOTICE, "", f"## {title}: {role}", ""]
    if user and user[-1].strip():
        lines += ["The request, as received:", ""]
        lines += ["> " + line if line else ">" for line in _excerpt(user[-1]).splitlines()]
        lines.append("")
    else:
        lines += ["The request carried no user text.", ""]
    if tool.get("description"):
        lines += ["## What a real run produces", "", tool["description"]]
        if tool.get("produces"):
            lines.append(f"The result would be the `{tool['produces']}` artifact.")
        lines.append("")
    lines += ["## Next step", "", "Configure an LLM provider and run this again for a real answer.", ""]
    status = {"status": "partial", "assumptions": ["offline mode: no language model was called"],
              "open_questions": ["Which LLM provider should answer this request?"]}
    lines += ["```json", json.dumps(status), "```"]
    return "\n".join(lines)


class OfflineProvider(Provider):
    """Answers without any network call."""

    type = "offline"
    default_model = "offline"

    def _answer(self, chat):
        text = offline_text(chat)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
        return text, f"chatcmpl-offline-{digest}", int(self.clock())

    def complete(self, chat, model, request_id=None):
        """The offline answer as a ``chat.completion``."""
        text, answer_id, created = self._answer(chat)
        body = {"id": answer_id, "object": "chat.completion", "created": created, "model": "offline",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}
        return Reply(body, 0, 0)

    def stream(self, chat, model, request_id=None):
        """The offline answer as chunk events, a paragraph at a time."""
        text, answer_id, created = self._answer(chat)
        events = [chunk_event(answer_id, created, "offline", {"role": "assistant", "content": ""})]
        paragraphs = text.split("\n\n")
        for i, paragraph in enumerate(paragraphs):
            piece = paragraph + ("\n\n" if i < len(paragraphs) - 1 else "")
            events.append(chunk_event(answer_id, created, "offline", {"content": piece}))
        events.append(chunk_event(answer_id, created, "offline", {}, "stop"))
        if chat.include_usage:
            events.append(chunk_event(answer_id, created, "offline",
                                      usage={"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}))
        events.append(DONE)
        return ReplayStream(events)

    def check_health(self):
        """Always healthy: nothing to reach."""
        return ["offline"]
