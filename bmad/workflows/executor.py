"""How the engine makes one step's LLM call: a small interface over the completions service.

``execute(model, messages, user, request_id, tool)`` returns a ``StepResult`` or
raises ``StepError``. ``AppExecutor`` sends every call through
``app.completions`` (the provider router: failover, breakers, pricing) and,
while an app has no completions service, answers like the built-in offline
provider so the engine still works end to end with no keys.
"""

import hashlib
import time

from ..errors import HTTPError

OFFLINE_STATUS = '```json\n{"status": "partial", "assumptions": ["No language model was called; this is an offline ' \
                 'placeholder."], "open_questions": ["Configure a provider to get real output."]}\n```'


class StepResult:
    """What one successful call produced, and what it cost."""

    __slots__ = ("text", "provider", "model", "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms",
                 "attempts")

    def __init__(self, text, provider, model, prompt_tokens=0, completion_tokens=0, cost_usd=0.0, latency_ms=0.0,
                 attempts=1):
        self.text = text
        self.provider = provider
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.cost_usd = cost_usd
        self.latency_ms = latency_ms
        self.attempts = attempts


class StepError(Exception):
    """A call failed; ``error_type`` is machine-readable, ``retryable`` says whether another attempt may help."""

    def __init__(self, message, error_type="step_failed", retryable=True):
        super().__init__(message)
        self.error_type = error_type
        self.retryable = retryable


TOOL_FIELDS = ("id", "name", "role", "description", "produces")


def _text(body):
    """The assistant text of an OpenAI ``chat.completion`` body."""
    try:
        content = body["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def offline_text(messages):
    """A deterministic, clearly marked placeholder answer for ``messages``."""
    system = messages[0]["content"] if messages else ""
    user = messages[-1]["content"] if messages else ""
    role = system.split(".", 1)[0][:200]
    digest = hashlib.sha256(user.encode("utf-8")).hexdigest()[:12]
    headings = [line[4:] for line in user.splitlines() if line.startswith("### ")][:20]
    listed = "\n".join(f"- {name}" for name in headings) or "- (no inputs)"
    return (f"# Offline draft\n\n> No language model was called: this text comes from the built-in offline "
            f"provider.\n\n{role}.\n\n## Material received\n\n{listed}\n\nInput fingerprint: `{digest}`.\n\n"
            f"{OFFLINE_STATUS}\n")


class AppExecutor:
    """Routes each step through ``app.completions`` (looked up per call: it may be installed after us)."""

    def __init__(self, app, monotonic=time.monotonic):
        self.app = app
        self.monotonic = monotonic

    def execute(self, model, messages, user, request_id, tool=None):
        """One routed completion; StepError on failure."""
        completions = getattr(self.app, "completions", None)
        began = self.monotonic()
        if completions is None:
            return StepResult(offline_text(messages), "offline", "offline",
                              latency_ms=(self.monotonic() - began) * 1000)
        from ..auth import Principal
        from ..providers.base import ChatRequest
        chat = ChatRequest(model, messages, tool={k: tool.get(k) for k in TOOL_FIELDS} if tool else None)
        try:
            done = completions.complete(chat, Principal(user), request_id=request_id)
        except HTTPError as e:
            # An upstream 4xx (unknown model, a refused prompt) fails the same way on every attempt.
            retryable = e.status >= 500 or e.status == 429
            raise StepError(e.message, e.type, retryable) from None
        except Exception as e:
            raise StepError(f"{type(e).__name__}: {e}", "step_error") from None
        usage = done.usage or {}
        return StepResult(_text(done.body), done.provider, done.model, usage.get("prompt_tokens", 0),
                          usage.get("completion_tokens", 0), done.cost_usd or 0.0, done.latency_ms, done.attempts)
