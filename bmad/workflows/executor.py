"""How the engine makes one step's LLM call: a small interface over the completions service.

``execute(model, messages, user, request_id, tool, cache=, cancel=None)``
returns a ``StepResult`` or raises ``StepError``; ``cancel`` is the run's
``CancelToken``, which aborts the upstream call when the run is cancelled
(``StepError`` with ``error_type`` ``cancelled``). ``AppExecutor`` sends every
call through the completion service's pipeline (cache, de-duplication, limits,
then the provider router: failover, breakers, pricing, and the built-in
offline provider when no other is configured). Tests swap in their own
executor to hold a step at a chosen moment.
"""

from ..errors import HTTPError
from ..gateway.chat import tool_summary
from ..gateway.pipeline import DEFAULT, Call
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


class AppExecutor:
    """Sends each step through the completion service's pipeline, charged to the user who started the run.

    A step gets the cache, de-duplication and the provider rate limit like
    any other call (the limit is charged, never refused: the run was admitted
    by the ``workflow`` limit); ``cache`` is the run's ``cache`` mode.
    """

    def __init__(self, completions):
        self.completions = completions

    def execute(self, model, messages, user, request_id, tool=None, cache=DEFAULT, cancel=None):
        """One routed completion; StepError on failure."""
        call = Call(ChatRequest(model, messages, tool=tool_summary(tool), cancel=cancel), user=user,
                    request_id=request_id, origin="workflow", cache_mode=cache, rate_client=user, admitted=True)
        try:
            done = self.completions.call(call)
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
        return StepResult(done.text, done.provider, done.model, usage.get("prompt_tokens", 0),
                          usage.get("completion_tokens", 0), done.cost_usd or 0.0, done.latency_ms, done.attempts)
