"""Health and metrics endpoints."""

import hmac

from .. import __version__
from ..errors import HTTPError, Unauthorized
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


def _admin_key(req):
    """True when the request carries an admin API key (never in open mode, where every caller is an admin).

    Checked here, not read from ``req.principal``: on an open route a caller without a valid key
    is let in as the anonymous principal, which is no key at all."""
    auth = req.app.auth
    if auth.open_mode:
        return False
    try:
        return auth.authenticate(req.headers).is_admin
    except HTTPError:
        return False


def metrics(req):
    """GET /bmad/metrics: the Prometheus text exposition (with ``metrics.token`` set: that token or an admin key)."""
    token = req.app.config.at("metrics.token")
    if token:
        given = req.headers.get("authorization", "")
        if not (hmac.compare_digest(given.encode("utf-8", "replace"), f"Bearer {token}".encode("utf-8"))
                or _admin_key(req)):
            raise Unauthorized("a valid metrics token or an admin API key is required: "
                               "'Authorization: Bearer <token or key>'", type="invalid_metrics_token")
    return Response(200, req.app.metrics.render(), content_type=CONTENT_TYPE)


