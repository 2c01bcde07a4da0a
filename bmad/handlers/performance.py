"""The performance endpoint (everything for an admin; circuits and the caller's own figures for a user), and the
performance summary of ``/bmad/health``."""

from .providers import own_usage


def snapshot(app):
    """Everything ``GET /bmad/performance`` reports."""
    stats = app.perfstats.snapshot()
    stats["cache"] = app.response_cache.stats()
    stats["rate_limits"] = app.limiter.stats()
    dedup = app.dedup.stats()
    stats["dedup"] = {"coalesced": dedup["coalesced"], "in_flight": dedup["in_flight"]}
    stats["connection_pool"] = app.llm.pool_stats()
    stats["circuit_breakers"] = app.llm.breaker_states()
    stats["pipeline"] = app.completions.pipeline.names()
    stats["history"] = app.perfstats.history()
    return stats


def summary(app):
    """The ``performance`` field of ``/bmad/health``: avg and p95 response time, cache hit rate."""
    result = app.perfstats.summary()
    result["cache_hit_rate"] = app.response_cache.cache.stats()["hit_rate"]
    return result


def show(req):
    """GET /bmad/performance: request stats over the last 5 minutes, cache, limits, de-duplication, pool, breakers.

    The service-wide and per-route figures need an admin key; a user gets the
    circuit states and their own requests over the same window."""
    app = req.app
    if req.principal.is_admin:
        return {"status": "success", "scope": "all", "stats": snapshot(app)}
    window = app.perfstats.window_seconds
    own = own_usage(req, window)
    llm = getattr(app, "llm", None)
    stats = {"window_seconds": window, "circuit_breakers": llm.breaker_states() if llm is not None else {},
             "your_requests": None if own is None else {k: own[k] for k in ("requests", "errors", "avg_latency_ms")}}
    return {"status": "success", "scope": "own", "user": req.user, "stats": stats}
