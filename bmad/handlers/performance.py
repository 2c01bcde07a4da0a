"""The performance endpoint."""

from ..gateway.performance import snapshot


def show(req):
    """GET /bmad/performance: request stats over the last 5 minutes, cache, limits, de-duplication, pool, breakers."""
    return {"status": "success", "stats": snapshot(req.app)}
