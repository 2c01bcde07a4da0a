"""The completion service: the one entry into the pipeline for every LLM call.

``/v1/chat/completions``, tool runs and workflow steps all call it::

    Completions.call(call: Call) -> Completion | RoutedStream
    Completions.tool_call(tool_id, body, *, user, ...) -> (tool, Call)     # 400/404 naming what is wrong
    Completions.tool_answer(tool, completion) -> dict
    Completions.tool_model(tool_id, requested=None, run_model=None) -> str

A call passes the plugins (``bmad/gateway/pipeline.py``) and then the
provider router: ``router.complete`` for a non-streamed call (a
``Completion``), ``router.stream`` for a streamed one (a ``RoutedStream``,
already past the upstream's first event: failover happens only before it).
It raises ``HTTPError`` (404 unknown model, 429 refused by a limit,
upstream 4xx passed through, 502/503/504 when providers fail).

Which model a tool uses, one rule everywhere: the request's ``model`` >
``tools.<id>.model`` > the workflow run's model > ``bmad-default``.
"""

import time

from ..catalog.prompts import run_messages
from ..errors import BadRequest, HTTPError
from ..providers.base import ChatRequest
from .chat import tool_model, tool_summary
from .pipeline import DEFAULT, Call, Pipeline
from .results import Completion


class Completions:
    """Runs calls through the pipeline to the provider router; builds tool runs."""

    def __init__(self, router, catalog, tools_config, *, plugins, logger):
        self.router = router
        self.catalog = catalog
        self.tools_config = tools_config
        self.pipeline = Pipeline(plugins, self._route, logger)

    def call(self, call):
        """One call through the pipeline -> ``Completion`` (or ``RoutedStream`` for a streamed call)."""
        return self.pipeline.run(call)

    def _route(self, call):
        if call.chat.stream:
            return self.router.stream(call.chat, user=call.user, request_id=call.request_id)
        return self.router.complete(call.chat, user=call.user, request_id=call.request_id)

    def tool_model(self, tool_id, requested=None, run_model=None):
        """The model a run of ``tool_id`` uses (see the module docstring)."""
        return tool_model(self.tools_config, tool_id, requested, run_model)

    def tool_call(self, tool_id, body, *, user=None, principal=None, request_id=None, origin="tool",
                  cache_mode=DEFAULT, rate_client=None):
        """``(tool, Call)`` for a run of catalog tool ``tool_id`` on ``body`` (``input``, ``context``, ``model``)."""
        tool = self.catalog.tool(tool_id)
        if body.get("stream") is not None and body.get("stream") is not False:  # identity: 0 == False
            raise BadRequest("tool runs do not stream; use POST /v1/chat/completions with stream for that",
                             param="stream")
        _, _, messages = run_messages(tool, body)
        chat = ChatRequest(self.tool_model(tool["id"], body.get("model")), messages, tool=tool_summary(tool))
        return tool, Call(chat, user=user, principal=principal, request_id=request_id, origin=origin,
                          cache_mode=cache_mode, rate_client=rate_client, tool_run=True)

    @staticmethod
    def tool_answer(tool, result):
        """The answer of a tool run: its output and what it cost."""
        return {"status": "success", "tool": tool["id"], "output": result.text, "provider": result.provider,
                "model": result.model, "usage": result.usage, "cost_usd": result.cost_usd,
                "latency_ms": result.latency_ms}


class ToolRunPlugin:
    """The pipeline plugin that counts tool runs: ``bmad_tool_executions_total`` and ``tool_execution`` events.

    Innermost, so an answer from the cache or an identical call in flight is
    not counted as an execution (the cache records its own ``cache_hit``).
    """

    name = "tool_runs"

    def __init__(self, metrics, events, clock=time.perf_counter):
        self.events = events
        self.clock = clock
        self.executions = metrics.counter("bmad_tool_executions_total", "BMAD tool runs, by outcome.",
                                          ("tool", "status"))

    def pre(self, call):
        """Note when the run began."""
        if call.tool_run:
            call.state["tool_started"] = self.clock()
        return None

    def post(self, call, result, error):
        """Count the run and record its event."""
        if not call.tool_run:
            return
        tool = call.chat.tool["id"]
        if isinstance(result, Completion):
            self.executions.inc(tool=tool, status="success")
            self.events.record("tool_execution", tool=tool, user_id=call.user, status="success",
                               latency_ms=result.latency_ms, tokens=result.usage["total_tokens"],
                               cost_usd=result.cost_usd, provider=result.provider, model=result.model)
        elif error is not None:
            latency_ms = round((self.clock() - call.state["tool_started"]) * 1000.0, 3)
            self.executions.inc(tool=tool, status="error")
            self.events.record("tool_execution", tool=tool, user_id=call.user, status="error",
                               latency_ms=latency_ms, tokens=0, cost_usd=0.0,
                               error_type=getattr(error, "type", "error"))
