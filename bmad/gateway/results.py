"""What a routed call gives back: a ``Completion``, a ``RoutedStream``, or an ``UpstreamRejected`` error.

A ``Completion`` is a finished non-streamed answer and where it came from.
The router hands out a ``RoutedStream`` once an upstream produced its first
event (failover is over by then); iterating it relays the upstream's events,
and when the stream ends, fails, or the client goes away (``close()``), it
settles the provider's circuit breaker, counts the tokens and cost, and
gives the upstream connection back or closes it. ``UpstreamRejected`` is an
upstream 4xx passed back to the caller as it was.
"""

import json
import time
import traceback

from ..errors import HTTPError
from ..http.request import dumps
from ..providers.base import CONNECTION, ProviderError
from ..providers.sse import event


class Completion:
    """A non-streamed completion and where it came from.

    ``body`` is the OpenAI ``chat.completion`` dict; ``usage`` has
    ``prompt_tokens``, ``completion_tokens``, ``total_tokens``; ``attempts``
    counts the providers tried (0: answered from the cache); ``failures``
    lists ``{provider, model, reason}`` for each candidate that failed or was
    skipped on the way. ``encoded()`` is the body as JSON bytes, encoded once.
    """

    __slots__ = ("_body", "_encoded", "provider", "model", "usage", "cost_usd", "latency_ms", "attempts",
                 "failures")

    def __init__(self, body, provider, model, usage, cost_usd, latency_ms, attempts, failures, encoded=None):
        self._body = body
        self._encoded = encoded
        self.provider = provider
        self.model = model
        self.usage = usage
        self.cost_usd = cost_usd
        self.latency_ms = latency_ms
        self.attempts = attempts
        self.failures = failures

    @classmethod
    def cached(cls, encoded, meta):
        """A completion answered from the cache: its stored bytes and ``meta()``; no provider was asked."""
        provider, model, usage, cost_usd, latency_ms = meta
        return cls(None, provider, model, dict(usage), cost_usd, latency_ms, 0, [], encoded)

    @property
    def body(self):
        """The ``chat.completion`` dict (decoded on first use when the answer came from the cache)."""
        if self._body is None:
            self._body = json.loads(self._encoded)
        return self._body

    def encoded(self):
        """The body as compact UTF-8 JSON bytes."""
        if self._encoded is None:
            self._encoded = dumps(self._body)
        return self._encoded

    def meta(self):
        """What the cache keeps beside the body, to give back an equal ``Completion``."""
        return (self.provider, self.model, self.usage, self.cost_usd, self.latency_ms)

    def headers(self):
        """The ``X-BMAD-*`` response headers."""
        return {"X-BMAD-Provider": self.provider, "X-BMAD-Model": self.model, "X-BMAD-Attempts": str(self.attempts)}

    @property
    def text(self):
        """The assistant's answer text."""
        try:
            content = self.body["choices"][0]["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            return ""
        if isinstance(content, list):
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content or ""


class UpstreamRejected(HTTPError):
    """An upstream 4xx the caller caused, passed back with the upstream's status."""

    def __init__(self, provider, error, attempts):
        super().__init__(f"provider '{provider}' rejected the request (HTTP {error.status}): {error.message}",
                         type=error.type or "upstream_error", param=error.param, code=error.code,
                         headers={"X-BMAD-Provider": provider, "X-BMAD-Attempts": str(attempts)})
        self.status = error.status


def error_event(error):
    """The SSE event that ends a stream whose upstream failed after the first byte."""
    body = {"error": {"message": f"the upstream failed mid-stream: {error.message}", "type": "upstream_error",
                      "param": None, "code": error.kind}}
    return event(body)


class RoutedStream:
    """A streamed completion under way: iterate it for the SSE bytes.

    ``provider``, ``model``, ``attempts`` and ``failures`` are known from the
    start; ``usage``, ``cost_usd``, ``latency_ms`` and ``outcome`` once the
    stream ended (or the client went away and ``close()`` was called). An
    upstream failure after the first event ends the stream with an error
    event instead of ``[DONE]``.
    """

    def __init__(self, router, upstream, cand, permit, attempts, failures, began, started, user, request_id):
        self.router = router
        self.upstream = upstream
        self.candidate = cand
        self.permit = permit
        self.provider = cand.provider.name
        self.model = cand.model
        self.attempts = attempts
        self.failures = failures
        self.began = began
        self.started = started
        self.user = user
        self.request_id = request_id
        self.usage = None
        self.cost_usd = 0.0
        self.latency_ms = None
        self.outcome = None
        self.on_finish = []  # pipeline post-hooks that need the final usage: called once with this stream
        self._gen = None

    def headers(self):
        """The ``X-BMAD-*`` response headers."""
        return {"X-BMAD-Provider": self.provider, "X-BMAD-Model": self.model, "X-BMAD-Attempts": str(self.attempts)}

    def __iter__(self):
        if self._gen is None:
            self._gen = self._relay()
        return self._gen

    def _relay(self):
        try:
            for event in self.upstream:
                yield event
        except ProviderError as error:
            self._finish(error)
            yield error_event(error)
            return
        except GeneratorExit:
            self._finish(None, closed=True)
            raise
        except BaseException as error:
            self._finish(ProviderError(CONNECTION, f"{type(error).__name__}"))
            raise
        self._finish(None)

    def close(self):
        """End the stream (the client is gone, or it was read to the end)."""
        if self._gen is not None:
            self._gen.close()
        if self.outcome is None:
            self._finish(None, closed=True)

    def _finish(self, error, closed=False):
        if self.outcome is not None:
            return
        router, cand, upstream = self.router, self.candidate, self.upstream
        done = time.perf_counter()
        upstream.close()
        prompt, completion = upstream.prompt_tokens, upstream.completion_tokens
        breaker = router.breakers[cand.provider.name]
        if error is None:
            if closed and not upstream.finished:
                breaker.release(self.permit)
                self.outcome = "client_closed"
            else:
                breaker.record_success(self.permit)
                self.outcome = "success"
            self.cost_usd = router.telemetry.succeeded(cand.provider, cand.model, done - self.started, prompt,
                                                       completion, self.user, status=self.outcome,
                                                       request_id=self.request_id, upstream_id=upstream.upstream_id)
        else:
            router.settle(breaker, self.permit, error)
            self.outcome = "error"
            self.cost_usd = router.telemetry.failed(cand.provider, cand.model, error, done - self.started, self.user,
                                                    self.request_id, prompt, completion, upstream.upstream_id)
        self.usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        self.latency_ms = round((done - self.began) * 1000.0, 3)
        for finished in self.on_finish:
            try:
                finished(self)
            except Exception:
                router.logger.error("a stream's finish hook failed", request_id=self.request_id,
                                    error=traceback.format_exc(limit=5))
