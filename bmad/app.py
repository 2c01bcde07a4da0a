"""The composition root: config -> stores -> router -> services -> routes.

``build_app(config)`` is the one place that constructs the service's parts
and hands each what it needs. There are no module-level singletons, so two
apps can run side by side in one process (tests do).
"""

import sys
import time
import traceback

from . import __version__
from .ops import process_metrics
from .analytics import install as install_analytics
from .http.auth import ANONYMOUS, Authenticator
from .catalog.loader import Catalog
from .gateway.completions import install as install_completions
from .http.cors import CorsPolicy
from .errors import HTTPError, InternalError, Unauthorized
from .ops.events import NullEvents
from .ops.logs import JsonLogger
from .ops.metrics import Registry
from .gateway.performance import install as install_performance
from .http.request import Response, dumps, json_response
from .handlers.routes import build_routes
from .workflows import install as install_workflows

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class App:
    """The configured service: its parts, the dispatch pipeline and its hooks.

    Attributes other parts extend: ``health_checks`` (name -> callable giving
    a dict for ``/bmad/health`` ``checks``), ``health_extras`` (top-level
    health fields), ``guards`` (callables run on each request after auth,
    e.g. rate limits), ``observers`` (callables ``(request, status,
    duration_ms)`` run after each response is written), ``drain_hooks`` (run
    when a graceful stop begins, before in-flight requests are waited for:
    stop starting new background work) and ``shutdown_hooks`` (run after the
    drain, in reverse order: flush and close).
    """

    def __init__(self, config, *, clock=time.time, logger=None, environ=None):
        self.config = config
        self.clock = clock
        self.logger = logger or JsonLogger(config["log_level"])
        self.started_at = clock()
        self.metrics = Registry()
        self.events = NullEvents()
        self.auth = Authenticator(config.at("auth.api_keys"), environ)
        self.auth_throttle = None  # the performance layer sets it: failed keys are rate limited per client
        self.cors = CorsPolicy.from_config(config.at("server.cors_origins", []))
        self.catalog = Catalog.load(config.get("catalog_dir"))
        self.health_checks = {}
        self.health_extras = {}
        self.guards = []
        self.observers = []
        self.drain_hooks = []
        self.shutdown_hooks = []
        self.stop_deadline = None
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

    def drain_time_left(self):
        """Seconds left of the graceful stop's drain time (the whole drain time before a stop begins)."""
        if self.stop_deadline is None:
            return self.config.at("server.drain_seconds")
        return max(0.0, self.stop_deadline - time.monotonic())

    # -- the request pipeline -----------------------------------------------------------------

    def dispatch(self, req):
        """Route, authenticate, guard and handle one request; always returns a Response."""
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
            for guard in self.guards:
                guard(req)
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
            return ANONYMOUS

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


def build_app(config, *, clock=time.time, logger=None, environ=None):
    """Build the whole service from its configuration."""
    app = App(config, clock=clock, logger=logger, environ=environ)
    if config.at("analytics.enabled"):
        install_analytics(app)  # first, so every later part records through app.events
    process_metrics.register(app.metrics)
    install_completions(app, environ)  # the provider router: app.llm and app.completions
    install_performance(app)
    install_workflows(app)  # last: it starts resuming unfinished runs, so everything it calls must exist
    if app.auth.open_mode:
        app.logger.warning("no API keys configured: running in open development mode; "
                           "callers are identified by X-User-ID or as anonymous")
    return app
