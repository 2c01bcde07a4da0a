"""The completion service: the one place a chat request becomes a routed LLM call.

``/v1/chat/completions``, tool runs and workflow steps all call it. Its
interface (``app.completions``)::

    parse_chat_request(body: dict) -> ChatRequest          # 400 naming the bad field
    Completions.complete(chat: ChatRequest, principal=None, *, request_id=None) -> Completion
    Completions.stream(chat: ChatRequest, principal=None, *, request_id=None) -> RoutedStream
    Completions.run_tool(tool_id, body, principal=None, *, request_id=None) -> (dict, Completion)
    Completions.cache_material(chat) -> dict                # what a cache key is made of

``complete`` is a single call with an explicit input and output, so a
response cache and request de-duplication can wrap exactly it: the input is
``ChatRequest`` (``model``, ``messages``, ``params``: every forwarded body
field; ``stream``/``include_usage``; ``tool``: the catalog tool of a tool run
or workflow step, or None), the output a ``Completion`` (``body``: the OpenAI
``chat.completion`` dict; ``provider``, ``model``, ``usage``
{prompt_tokens, completion_tokens, total_tokens}, ``cost_usd``,
``latency_ms``, ``attempts``, ``failures``; ``headers()`` gives the
``X-BMAD-*`` response headers). It raises ``HTTPError`` (404 unknown
model, upstream 4xx passed through, 502/503/504 when providers fail).

``stream`` routes up to the upstream's first event (failover happens only
before it) and returns an iterable of SSE bytes ending in ``data: [DONE]``;
after iteration it knows its ``usage``, ``cost_usd`` and ``latency_ms``.
"""

import time

from ..errors import BadRequest, HTTPError
from .router import DEFAULT_ALIAS
from .results import Completion, RoutedStream  # noqa: F401 (re-exported)
from ..catalog.prompts import run_messages
from ..providers.base import ChatRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_MODEL_CHARS = 256
MAX_MESSAGES = 10000
# Body fields that never change the answer (attribution, transport); a cache key leaves them out.
NEUTRAL_PARAMS = frozenset({"user", "metadata", "store", "service_tier", "stream", "stream_options"})
TOOL_FIELDS = ("id", "name", "role", "description", "produces")


def _number(body, name, low, high):
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadRequest(f"field '{name}' must be a number from {low} to {high}", param=name)


def _positive_int(body, name):
    value = body.get(name)
    if isinstance(value, float) and value.is_integer():
        value = body[name] = int(value)  # JSON has one number type: 3.0 is the integer 3
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise BadRequest(f"field '{name}' must be a positive integer", param=name)


def check_model(model, field="model"):
    """A requested model name, or 400 naming ``field``."""
    if not isinstance(model, str) or not model.strip():
        raise BadRequest(f"field '{field}' is required: a model name or alias (GET /v1/models lists them)",
                         param=field)
    if len(model) > MAX_MODEL_CHARS or any(ord(ch) < 32 for ch in model):
        raise BadRequest(f"field '{field}' must be at most {MAX_MODEL_CHARS} printable characters", param=field)
    return model


def check_messages(messages):
    """The OpenAI ``messages`` list, or 400 naming the bad element."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("field 'messages' is required: a non-empty list of {role, content}", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise BadRequest(f"field 'messages' has more than {MAX_MESSAGES} messages", param="messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise BadRequest(f"field '{where}' must be an object with role and content", param=where)
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:  # a dict or list role is unhashable: check the type first
            raise BadRequest(f"field '{where}.role' must be one of {', '.join(sorted(ROLES))}", param=f"{where}.role")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise BadRequest(f"field '{where}.content' must be a string or a list of content parts",
                             param=f"{where}.content")
        if isinstance(content, list) and not all(isinstance(part, dict) for part in content):
            raise BadRequest(f"field '{where}.content' parts must be objects", param=f"{where}.content")
    return messages


def parse_chat_request(body):
    """Validate an OpenAI chat completions body and return its ``ChatRequest``."""
    model = check_model(body.get("model"))
    messages = check_messages(body.get("messages"))
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("field 'stream' must be a boolean", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("field 'stream_options' must be an object", param="stream_options")
    include_usage = bool(options and options.get("include_usage") is True)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    for name in ("max_tokens", "max_completion_tokens", "n"):
        _positive_int(body, name)
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or isinstance(stop, list) and len(stop) <= 4
                                 and all(isinstance(s, str) for s in stop)):
        raise BadRequest("field 'stop' must be a string or a list of up to 4 strings", param="stop")
    params = {k: v for k, v in body.items() if k not in ("model", "messages", "stream", "stream_options")}
    return ChatRequest(model, messages, params, stream=stream, include_usage=include_usage)


class Completions:
    """Routes chat requests and tool runs, and reports tool executions."""

    def __init__(self, router, catalog, config, *, metrics, record_event, logger):
        self.router = router
        self.catalog = catalog
        self.config = config
        self.record_event = record_event
        self.logger = logger
        self.tool_executions = metrics.counter("bmad_tool_executions_total", "BMAD tool runs, by outcome.",
                                               ("tool", "status"))

    def complete(self, chat=None, principal=None, *, request_id=None, model=None, messages=None, params=None,
                 tool=None, user=None):
        """One routed, non-streamed completion -> ``Completion`` (see the module docstring).

        Give a ``ChatRequest``, or its parts as keywords (``model``,
        ``messages``, ``params``, ``tool``; validated like a request body).
        ``user`` names the caller when there is no ``principal``.
        """
        if chat is None:
            chat = ChatRequest(check_model(model), check_messages(messages), dict(params or {}), tool=tool)
        return self.router.complete(chat, user=_user(principal) or user, request_id=request_id)

    def stream(self, chat, principal=None, *, request_id=None):
        """One routed, streamed completion -> ``RoutedStream`` (already past the upstream's first event)."""
        return self.router.stream(chat, user=_user(principal), request_id=request_id)

    def cache_material(self, chat):
        """What identifies an answer: the resolved route, the messages and the output-affecting params."""
        return {"route": self.router.route_key(chat.model), "messages": chat.messages,
                "params": {k: v for k, v in chat.params.items() if k not in NEUTRAL_PARAMS}}

    def tool_model(self, tool_id, requested=None):
        """The model a run of ``tool_id`` uses: the request's, else ``tools.{id}.model``, else ``bmad-default``."""
        if requested is not None:
            return check_model(requested)
        configured = self.config.at(f"tools.{tool_id}.model") if hasattr(self.config, "at") else None
        return configured if isinstance(configured, str) and configured else DEFAULT_ALIAS

    def run_tool(self, tool_id, body, principal=None, *, request_id=None):
        """Run a catalog tool on ``body`` (``input``, ``context``, ``model``); returns ``(answer, Completion)``."""
        tool = self.catalog.tool(tool_id)
        if body.get("stream") is not None and body.get("stream") is not False:  # identity: 0 == False
            raise BadRequest("tool runs do not stream; use POST /v1/chat/completions with stream for that",
                             param="stream")
        _, _, messages = run_messages(tool, body)
        chat = ChatRequest(self.tool_model(tool_id, body.get("model")), messages,
                           tool={k: tool.get(k) for k in TOOL_FIELDS})
        user = _user(principal)
        started = time.perf_counter()
        try:
            result = self.complete(chat, principal, request_id=request_id)
        except HTTPError as error:
            latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
            self.tool_executions.inc(tool=tool["id"], status="error")
            self.record_event("tool_execution", tool=tool["id"], user_id=user, status="error", latency_ms=latency_ms,
                              tokens=0, cost_usd=0.0, error_type=error.type)
            raise
        self.tool_executions.inc(tool=tool["id"], status="success")
        self.record_event("tool_execution", tool=tool["id"], user_id=user, status="success",
                          latency_ms=result.latency_ms, tokens=result.usage["total_tokens"], cost_usd=result.cost_usd,
                          provider=result.provider, model=result.model)
        answer = {"status": "success", "tool": tool["id"], "output": result.text, "provider": result.provider,
                  "model": result.model, "usage": result.usage, "cost_usd": result.cost_usd,
                  "latency_ms": result.latency_ms}
        return answer, result


def _user(principal):
    return principal.user if principal is not None else None



def install(app, environ=None):
    """Build the provider router (``app.llm``) and this service (``app.completions``) into ``app``."""
    import os

    from .router import LLMRouter

    environ = os.environ if environ is None else environ
    # app.events is looked up per event: analytics may replace it after this runs.
    app.llm = LLMRouter.from_config(app.config, environ=environ, clock=app.clock, logger=app.logger,
                                    metrics=app.metrics, record_event=lambda type, **f: app.events.record(type, **f))
    app.completions = Completions(app.llm, app.catalog, app.config, metrics=app.metrics,
                                  record_event=lambda type, **f: app.events.record(type, **f), logger=app.logger)
    app.health_checks["providers"] = app.llm.health_summary
    app.shutdown_hooks.append(app.llm.close)
    app.logger.info("providers configured", providers=[
        {"name": p.name, "type": p.type, "host": p.spec.hostport} for p in app.llm.providers])
    app.llm.start()
