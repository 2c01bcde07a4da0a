"""The composition root: config -> stores -> router -> services -> routes.

``build_app(config)`` is the one place that constructs the service's parts,
in order, and hands each what it needs as constructor arguments. There are
no module-level singletons, so two apps can run side by side in one process
(tests do), and a test substitutes a part (the event sink, the clock) by
passing it to ``build_app``.

Every LLM call passes one pipeline (``bmad/gateway/pipeline.py``); its
plugins, in order (post-hooks run in reverse)::

    rate_limit   the caller's provider-class token bucket (429 when empty)
    cache        answer from the response cache; store fresh answers
    dedup        identical concurrent calls share one upstream call
    tool_runs    count catalog tool runs and record tool_execution events
    -> the provider router (per-attempt telemetry, cost, failover, breakers)
"""

import os
import sys
import time
import traceback

from . import __version__
from .analytics import Analytics, register_metrics as register_analytics_metrics
from .catalog.loader import Catalog
from .errors import ConfigError, HTTPError, InternalError, Unauthorized
from .gateway import caching
from .gateway.cache import ResponseCache
from .gateway.completions import Completions, ToolRunPlugin
from .gateway.dedup import DedupPlugin, SingleFlight
from .gateway.limits import RateLimitPlugin
from .gateway.router import LLMRouter
from .handlers.routes import build_routes
from .http.auth import ANONYMOUS_USER, OPEN_MODE_ADMIN, Authenticator
from .http.cors import CorsPolicy
from .http.ratelimit import AuthThrottle, RateLimiter, RateLimitGuard
from .http.request import KNOWN_METHODS, Response, dumps, json_response
from .ops import process_metrics
from .ops.events import NullEvents
from .ops.logs import JsonLogger
from .ops.metrics import Registry
from .ops.perfstats import PerfStats
from .state.cache import SharedResponseCache
from .state.dedup import SharedDedupPlugin
from .state.health import BackendHealth
from .state.ratelimit import SharedRateLimiter
from .state.redis import Redis
from .workflows import AppExecutor, build as build_workflows

PLUGIN_ORDER = ("rate_limit", "cache", "dedup", "tool_runs")
ON_REDIS_ERROR = ("closed", "open_local")


class App:
    """The configured service: every part it has, and the dispatch of one request through them.

    Parts: ``config``, ``clock``, ``logger``, ``metrics``, ``events`` (the
    event sink), ``analytics`` (None when disabled), ``auth``,
    ``auth_throttle`` (None in open mode), ``limiter``, ``rate_limits`` (the
    HTTP rate-limit guard), ``cors``, ``catalog``, ``llm`` (the provider
    router), ``response_cache``, ``dedup``, ``completions`` (the pipeline's
    entry), ``perfstats``, ``workflows``, ``redis`` (the shared-state client, or None
when state is this process's own); ``router`` is the route table.
    ``drain()`` stops new background work when a graceful stop begins;
    ``shutdown()`` flushes and closes, in reverse order of construction.
    """

    def __init__(self, config, *, clock, logger, metrics, events, analytics, auth, auth_throttle, limiter,
                 rate_limits, cors, catalog, llm, response_cache, dedup, completions, perfstats, workflows, redis=None,
                 state_health=None):
        self.config = config
        self.clock = clock
        self.logger = logger
        self.started_at = clock()
        self.metrics = metrics
        self.events = events
        self.analytics = analytics
        self.auth = auth
        self.auth_throttle = auth_throttle
        self.limiter = limiter
        self.rate_limits = rate_limits
        self.cors = cors
        self.catalog = catalog
        self.llm = llm
        self.response_cache = response_cache
        self.dedup = dedup
        self.completions = completions
        self.perfstats = perfstats
        self.workflows = workflows
        self.redis = redis
        self.stop_deadline = None
        self.health_checks = {"providers": llm.health_summary, "workflows": workflows.health}
        if analytics is not None:
            self.health_checks["analytics"] = analytics.health
        if state_health is not None:
            self.health_checks["state"] = state_health.check
        self.observers = [self._record_perfstats] + ([analytics.observe] if analytics is not None else [])
        self._http_metrics()
        self.router = build_routes(self)

    def _http_metrics(self):
        m = self.metrics
        m.gauge("bmad_build_info", "Build information; always 1.", ("python", "version")).set(
            1, version=__version__, python=sys.version.split()[0])
        self.http_requests = m.counter("bmad_http_requests_total", "HTTP requests answered.",
                                       ("method", "route", "status"))
        self.http_duration = m.histogram("bmad_http_request_duration_seconds",
                                         "Time from reading a request to finishing its response.", ("route",))
        self.http_in_flight = m.gauge("bmad_http_requests_in_flight", "Requests being handled now.")

    def start(self):
        """Start the background work: analytics writer, provider health checks, then workflow runs."""
        if self.analytics is not None:
            self.analytics.start()
        self.llm.start()
        self.workflows.start()  # last: it resumes unfinished runs, which call everything above
        return self

    def drain(self):
        """A graceful stop began: start no new background work."""
        self.workflows.begin_stop()

    def shutdown(self):
        """After the drain: stop, flush and close every part, the last built first."""
        for name, close in (("workflows", lambda: self.workflows.stop(self.drain_time_left())),
                            ("providers", self.llm.close),
                            ("analytics", self.analytics.close if self.analytics is not None else None),
                            ("redis", self.redis.close if self.redis is not None else None)):
            if close is None:
                continue
            try:
                close()
            except Exception as e:
                self.logger.error("shutdown step failed", part=name, error=f"{type(e).__name__}: {e}")

    def drain_time_left(self):
        """Seconds left of the graceful stop's drain time (the whole drain time before a stop begins)."""
        if self.stop_deadline is None:
            return self.config.at("server.drain_seconds")
        return max(0.0, self.stop_deadline - time.monotonic())

    # -- the request pipeline -----------------------------------------------------------------

    def dispatch(self, req):
        """Route, authenticate, rate limit and handle one request; always returns a Response."""
        try:
            preflight = self.cors.apply(req, self.router)
            if preflight is not None:
                return preflight
            route, params = self.router.match(req.method, req.path)
            req.route = route
            req.params = params
            if route.auth == "open":
                req.principal = self._optional_principal(req)
            else:
                req.principal = self._authenticate(req)
                self.auth.authorize(req.principal, route.auth)
            self.rate_limits(req)
            result = route.handler(req)
            return result if isinstance(result, Response) else json_response(result)
        except HTTPError as e:
            return self.error_response(req, e)
        except Exception:
            self.logger.error("unhandled exception", request_id=req.request_id, method=req.method,
                              path=req.path, error=traceback.format_exc(limit=20))
            return self.error_response(req, InternalError(
                f"internal error; the server log has the details under request id {req.request_id}"))

    def _authenticate(self, req):
        throttle = self.auth_throttle
        guessed = "authorization" in req.headers  # a missing key guesses nothing and is never limited
        if throttle is not None and guessed:
            throttle.check(req)  # a client over its failed-key budget is refused before its key is tried
        try:
            return self.auth.authenticate(req.headers)
        except Unauthorized:
            if throttle is not None:
                throttle.failed(req, guessed)
            raise

    def _optional_principal(self, req):
        try:
            return self.auth.authenticate(req.headers)
        except HTTPError:
            return OPEN_MODE_ADMIN if self.auth.open_mode else ANONYMOUS_USER

    def error_response(self, req, error):
        """The JSON error body for ``error`` (the OpenAI error shape on /v1 routes)."""
        req.context["error_type"] = error.type  # analytics records it with the request
        headers = dict(error.headers)
        if error.close:
            headers["Connection"] = "close"
        if req.path.startswith("/v1/"):
            body = {"error": {"message": error.message, "type": error.type, "param": error.param,
                              "code": error.code or error.type}}
        else:
            body = {"status": "error", "error": {"type": error.type, "message": error.message,
                                                 "request_id": req.request_id}}
        return Response(error.status, dumps(body), headers)

    def draining_response(self, req):
        """What a request arriving during shutdown gets."""
        return Response(503, dumps({"status": "draining", "request_id": req.request_id}),
                        {"Connection": "close", "Retry-After": "1"})

    def _record_perfstats(self, req, status, duration_ms):
        if req.route is not None and not req.route.record:
            return  # health, metrics and the UI's own files: the same requests analytics leaves out
        self.perfstats.record(req.route.template if req.route else "other", duration_ms, status)

    def observe(self, req, status, duration_ms):
        """Log, count and report one finished request."""
        route = req.route.template if req.route else "other"
        method = req.method if req.method in KNOWN_METHODS else "other"
        self.http_requests.inc(method=method, route=route, status=str(status))
        self.http_duration.observe(duration_ms / 1000.0, route=route)
        self.logger.info("request", request_id=req.request_id, method=req.method[:16], path=req.path[:256],
                         status=status, duration_ms=round(duration_ms, 3), user=req.user)
        for observer in self.observers:
            try:
                observer(req, status, duration_ms)
            except Exception:
                self.logger.error("observer failed", request_id=req.request_id, error=traceback.format_exc(limit=5))


def build_app(config, *, clock=time.time, logger=None, environ=None, events=None):
    """Build the whole service from its configuration, and start its background work.

    ``events`` replaces the event sink (tests pass a recording one); by
    default it is the analytics recorder, or a sink that drops events when
    analytics is disabled.
    """
    environ = os.environ if environ is None else environ
    logger = logger or JsonLogger(config["log_level"])
    metrics = Registry()
    analytics = Analytics.from_config(config, clock=clock, logger=logger) if config.at("analytics.enabled") else None
    if analytics is not None:
        register_analytics_metrics(metrics, analytics)
    if events is None:
        events = analytics.recorder if analytics is not None else NullEvents()
    process_metrics.register(metrics)

    auth = Authenticator(config.at("auth.api_keys"), environ)
    limiter = RateLimiter.from_config(config, clock=clock)
    limited = metrics.counter("bmad_rate_limited_total", "Requests refused by a rate limit.", ("class",))
    for klass in limiter.policies:  # present at 0 from the start, so rate() sees the first refusal
        limited.inc(0, **{"class": klass})

    def on_limited(client, klass, route):
        limited.inc(**{"class": klass})
        events.record("rate_limited", client=client, route=route, **{"class": klass})

    redis, state_health = _shared_state(config, logger, metrics)
    if redis is not None:
        limiter = SharedRateLimiter(redis, limiter, health=state_health, on_error=config.at("state.on_redis_error"),
                                    clock=clock)
    trust_proxy = config.at("server.trust_proxy")
    rate_limits = RateLimitGuard(limiter, by_user=not auth.open_mode, trust_proxy=trust_proxy, on_limited=on_limited)
    auth_failed = metrics.counter("bmad_auth_failed_total", "Requests refused for a missing or invalid API key.")
    auth_failed.inc(0)
    auth_throttle = None if auth.open_mode else AuthThrottle(limiter, trust_proxy=trust_proxy, on_limited=on_limited,
                                                             on_failed=auth_failed.inc)
    catalog = Catalog.load(config.get("catalog_dir"))

    llm = LLMRouter.from_config(config, environ=environ, clock=clock, logger=logger, metrics=metrics,
                                record_event=events.record)
    logger.info("providers configured", providers=[
        {"name": p.name, "type": p.type, "host": p.spec.hostport} for p in llm.providers])
    response_cache = (ResponseCache.from_config(config, clock=clock) if redis is None
                      else SharedResponseCache.from_config(config, redis, state_health, clock=clock))
    caching.register_metrics(metrics, response_cache)
    dedup = SingleFlight(timeout=float(llm.max_timeout()), copier=_completion_copy, coalesced_counter=metrics.counter(
        "bmad_dedup_coalesced_total", "Requests answered with the result of an identical in-flight request."))
    plugins = {
        "rate_limit": RateLimitPlugin(limiter, on_limited),
        "cache": caching.CachePlugin(response_cache, llm.route_key, events),
        "dedup": DedupPlugin(dedup) if redis is None else SharedDedupPlugin(
            DedupPlugin(dedup), redis, health=state_health, timeout=float(llm.max_timeout())),
        "tool_runs": ToolRunPlugin(metrics, events),
    }
    completions = Completions(llm, catalog, config.get("tools", {}),
                              plugins=[plugins[name] for name in PLUGIN_ORDER], logger=logger)
    workflows = build_workflows(config, catalog, AppExecutor(completions), events=events, metrics=metrics,
                                logger=logger, clock=clock)
    app = App(config, clock=clock, logger=logger, metrics=metrics, events=events, analytics=analytics, auth=auth,
              auth_throttle=auth_throttle, limiter=limiter, rate_limits=rate_limits, cors=CorsPolicy.from_config(
                  config.at("server.cors_origins", [])), catalog=catalog, llm=llm, response_cache=response_cache,
              dedup=dedup, completions=completions, perfstats=PerfStats(clock=clock), workflows=workflows,
              redis=redis, state_health=state_health)
    if auth.open_mode:
        logger.warning("no API keys configured: running in open development mode; "
                       "callers are identified by X-User-ID or as anonymous")
    return app.start()


def _shared_state(config, logger, metrics):
    """``(redis client, its BackendHealth)`` when ``state.redis_url`` is set, else ``(None, None)``."""
    url = config.at("state.redis_url")
    if not url:
        return None, None
    mode = config.at("state.on_redis_error")
    if mode not in ON_REDIS_ERROR:
        raise ConfigError(f"config key 'state.on_redis_error' must be one of {', '.join(ON_REDIS_ERROR)}, got {mode!r}")
    try:
        redis = Redis.from_url(url)
    except ValueError as e:
        raise ConfigError(f"config key 'state.redis_url': {e}") from None
    gauge = metrics.gauge("bmad_state_backend_up", "1 while a shared-state backend answers, 0 while it cannot be "
                          "reached.", ("backend",))
    return redis, BackendHealth("redis", logger=logger, gauge=gauge, probe=lambda: redis.execute("PING"))


def _completion_copy(result):
    """A waiter's copy of its leader's answer: nothing downstream changes a ``Completion`` in place."""
    import copy
    return copy.copy(result)
