"""The one pipeline around every LLM call, and the plugin contract.

Every request for a model -- ``/v1/chat/completions``, a tool run, a
workflow step, and every other API shape -- becomes one ``Call`` that
passes the plugins in order, then the provider router, then the plugins'
post-hooks in reverse order. The order is one list, in the composition
root (``bmad/app.py``, ``PLUGIN_ORDER``).

The plugin contract (a plugin is any object with these three members):

``name``
    A short identifier (logs, ``/bmad/performance``).
``pre(call)``
    Runs before the call reaches the router. Return None to go on; return
    a ``Completion`` to answer at once (a cache hit, a coalesced answer):
    the later plugins and the router are then skipped; or raise an
    ``HTTPError`` to refuse (a rate limit, a budget). A plugin may add
    response headers to ``call.headers`` and keep its own per-call state
    in ``call.state``.
``post(call, result, error)``
    Runs for every plugin whose ``pre`` returned (including one that
    answered), in reverse order, with the ``Completion`` or ``RoutedStream``
    the call produced, or the exception it raised. Post-hooks observe;
    they must not raise (an exception is logged and swallowed), and the
    caller gets the result or the error unchanged. For a stream,
    ``result`` is handed over before its first byte is relayed: a plugin
    that needs the final usage appends a callable to ``result.on_finish``,
    which the stream calls once with itself when it ends, fails or is
    closed by a client that went away.

Per-attempt accounting (each provider tried, its tokens, cost, failovers
and breaker) is the router's; the pipeline sees whole calls.
"""

import traceback

DEFAULT, NO_CACHE, NO_STORE = "default", "no-cache", "no-store"
CACHE_MODES = (DEFAULT, NO_CACHE, NO_STORE)


class Call:
    """One LLM call on its way through the pipeline.

    ``chat``: the internal request (``ChatRequest``); ``user``: who is
    charged (a workflow step: the user who started the run); ``origin``:
    the route template of the entry point, or ``workflow``; ``cache_mode``:
    ``default`` | ``no-cache`` | ``no-store`` (from ``Cache-Control``, or a
    run's ``cache``); ``rate_client``: the rate-limit client id, or None
    when the entry point is not rate limited; ``admitted``: True when the
    work was already admitted by another limit (a workflow step), so the
    provider limit is charged but never refuses; ``tool_run``: a catalog
    tool run (``POST /bmad/tools/{id}/run``); ``headers``: response headers
    the plugins add; ``state``: the plugins' per-call scratch space.
    """

    __slots__ = ("chat", "user", "principal", "request_id", "origin", "cache_mode", "rate_client", "admitted",
                 "tool_run", "headers", "state")

    def __init__(self, chat, *, user=None, principal=None, request_id=None, origin="api", cache_mode=DEFAULT,
                 rate_client=None, admitted=False, tool_run=False):
        self.chat = chat
        self.user = user if user is not None else (principal.user if principal is not None else None)
        self.principal = principal
        self.request_id = request_id
        self.origin = origin
        self.cache_mode = cache_mode
        self.rate_client = rate_client
        self.admitted = admitted
        self.tool_run = tool_run
        self.headers = {}
        self.state = {}


class Pipeline:
    """Runs calls through ``plugins`` around ``terminal(call)`` (the provider router)."""

    def __init__(self, plugins, terminal, logger):
        self.plugins = tuple(plugins)
        self.terminal = terminal
        self.logger = logger

    def run(self, call):
        """The call's ``Completion`` or ``RoutedStream``; raises what the call raised."""
        entered = []
        result = error = None
        try:
            for plugin in self.plugins:
                answer = plugin.pre(call)
                entered.append(plugin)
                if answer is not None:
                    result = answer
                    break
            else:
                result = self.terminal(call)
        except Exception as e:
            error = e
        for plugin in reversed(entered):
            try:
                plugin.post(call, result, error)
            except Exception:
                self.logger.error("pipeline post-hook failed", plugin=plugin.name, request_id=call.request_id,
                                  error=traceback.format_exc(limit=5))
        if error is not None:
            raise error
        return result

    def names(self):
        """The plugins' names, in order."""
        return [p.name for p in self.plugins]
