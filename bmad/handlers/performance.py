"""The performance endpoint, and the performance summary of ``/bmad/health``."""


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
    return stats


def summary(app):
    """The ``performance`` field of ``/bmad/health``: avg and p95 response time, cache hit rate."""
    result = app.perfstats.summary()
    result["cache_hit_rate"] = app.response_cache.cache.stats()["hit_rate"]
    return result


def show(req):
    """GET /bmad/performance: request stats over the last 5 minutes, cache, limits, de-duplication, pool, breakers."""
    return {"status": "success", "stats": snapshot(req.app)}
