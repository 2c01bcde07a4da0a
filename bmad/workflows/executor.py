"""How the engine makes one step's LLM call: a small interface over the completions service.

``execute(model, messages, user, request_id, tool, cancel=None)`` returns a
``StepResult`` or raises ``StepError``; ``cancel`` is the run's ``CancelToken``,
which aborts the upstream call when the run is cancelled (``StepError`` with
``error_type`` ``cancelled``). ``AppExecutor`` sends every call through
``app.completions`` (the provider router: failover, breakers, pricing, and
the built-in offline provider when no other is configured). Tests swap in
their own executor to hold a step at a chosen moment.
"""

from ..http.auth import Principal
from ..errors import HTTPError
from ..providers.base import ChatRequest
from ..providers.cancel import Cancelled


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


CANCELLED = "cancelled"
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


class AppExecutor:
    """Routes each step through ``app.completions`` (looked up per call, so it may be installed after us)."""

    def __init__(self, app):
        self.app = app

    def execute(self, model, messages, user, request_id, tool=None, cancel=None):
        """One routed completion; StepError on failure."""
        chat = ChatRequest(model, messages, tool={k: tool.get(k) for k in TOOL_FIELDS} if tool else None,
                           cancel=cancel)
        try:
            done = self.app.completions.complete(chat, Principal(user), request_id=request_id)
        except Cancelled:
            raise StepError("the run was cancelled while the step was calling the model", CANCELLED,
                            retryable=False) from None
        except HTTPError as e:
            # An upstream 4xx (unknown model, a refused prompt) fails the same way on every attempt.
            retryable = e.status >= 500 or e.status == 429
            raise StepError(e.message, e.type, retryable) from None
        except Exception as e:
            raise StepError(f"{type(e).__name__}: {e}", "step_error") from None
        usage = done.usage or {}
        return StepResult(_text(done.body), done.provider, done.model, usage.get("prompt_tokens", 0),
                          usage.get("completion_tokens", 0), done.cost_usd or 0.0, done.latency_ms, done.attempts)
