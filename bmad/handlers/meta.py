"""Health and metrics endpoints."""

from .. import __version__
from ..errors import Unauthorized
from ..ops.metrics import CONTENT_TYPE
from ..http.request import Response
from . import performance


def health(req):
    """GET /bmad/health: liveness, version, uptime and each component's checks."""
    app = req.app
    checks = {}
    status = "healthy"
    for name, check in app.health_checks.items():
        result = check()
        checks[name] = result
        if isinstance(result, dict) and result.get("status") == "degraded":
            status = "degraded"
    body = {"status": status, "version": __version__,
            "uptime_seconds": round(app.clock() - app.started_at, 3), "checks": checks}
    body["performance"] = performance.summary(app)
    return body


def metrics(req):
    """GET /bmad/metrics: the Prometheus text exposition."""
    token = req.app.config.at("metrics.token")
    if token:
        import hmac
        given = req.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode("utf-8", "replace"), f"Bearer {token}".encode("utf-8")):
            raise Unauthorized("a valid metrics token is required: 'Authorization: Bearer <token>'",
                               type="invalid_metrics_token")
    return Response(200, req.app.metrics.render(), content_type=CONTENT_TYPE)


