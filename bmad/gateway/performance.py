"""The performance layer of an app: response cache, rate limits, de-duplication and request stats.

``install(app)`` builds the parts from the config, hangs them on the app
(``app.response_cache``, ``app.dedup``, ``app.limiter``, ``app.perfstats``),
adds the rate-limit guard, the stats observer, the health summary and the
metrics. ``snapshot(app)`` is what ``GET /bmad/performance`` answers.
"""

import threading

from .cache import CAPACITY, EXPIRED, ResponseCache
from .dedup import SingleFlight
from ..ops.perfstats import PerfStats
from ..http.ratelimit import AuthThrottle, RateLimiter, RateLimitGuard

# Without a provider router (tests of this layer alone), waiters give a leader this long.
DEFAULT_PROVIDER_TIMEOUT = 120.0


def provider_timeout(app):
    """The longest one provider attempt may take: the bound on how long a de-duplicated request waits."""
    llm = getattr(app, "llm", None)
    return float(llm.max_timeout()) if llm is not None else DEFAULT_PROVIDER_TIMEOUT


def install(app):
    """Build and wire the performance layer into ``app``."""
    config = app.config
    m = app.metrics
    app.response_cache = ResponseCache.from_config(config, clock=app.clock)
    app.limiter = RateLimiter.from_config(config, clock=app.clock)
    app.perfstats = PerfStats(clock=app.clock)
    app.dedup = SingleFlight(timeout=provider_timeout(app), coalesced_counter=m.counter(
        "bmad_dedup_coalesced_total", "Requests answered with the result of an identical in-flight request."))
    limited = m.counter("bmad_rate_limited_total", "Requests refused by a rate limit.", ("class",))
    for klass in app.limiter.policies:  # present at 0 from the start, so rate() sees the first refusal
        limited.inc(0, **{"class": klass})

    def on_limited(client, klass, route):
        limited.inc(**{"class": klass})
        # app.events is read per call: the analytics engine may replace it after this runs
        app.events.record("rate_limited", client=client, route=route, **{"class": klass})

    app.guards.append(RateLimitGuard(app.limiter, by_user=not app.auth.open_mode,
                                     trust_proxy=config.at("server.trust_proxy"), on_limited=on_limited))
    auth_failed = m.counter("bmad_auth_failed_total", "Requests refused for a missing or invalid API key.")
    auth_failed.inc(0)
    if not app.auth.open_mode:
        app.auth_throttle = AuthThrottle(app.limiter, trust_proxy=config.at("server.trust_proxy"),
                                         on_limited=on_limited, on_failed=auth_failed.inc)
    app.observers.append(_observer(app.perfstats))
    app.health_extras["performance"] = lambda: health_summary(app)
    _cache_metrics(m, app.response_cache)


def _observer(perfstats):
    def observe(req, status, duration_ms):
        if req.route is not None and not req.route.record:
            return  # health, metrics and the UI's own files: the same requests analytics leaves out
        perfstats.record(req.route.template if req.route else "other", duration_ms, status)
    return observe


def _cache_metrics(m, response_cache):
    # The cache keeps its own counts (no metric calls on its hot path); each
    # scrape adds what they grew by since the last one. The lock keeps two
    # concurrent scrapes from adding the same growth twice.
    hits = m.counter("bmad_cache_hits_total", "Response cache lookups answered from the cache.")
    misses = m.counter("bmad_cache_misses_total", "Response cache lookups that found nothing.")
    evictions = m.counter("bmad_cache_evictions_total", "Response cache entries evicted, by reason.", ("reason",))
    entries = m.gauge("bmad_cache_entries", "Entries in the response cache.")
    for reason in (CAPACITY, EXPIRED):
        evictions.inc(0, reason=reason)
    lock = threading.Lock()

    def catch_up(counter, total, **labels):
        grown = total - counter.value(**labels)
        if grown > 0:
            counter.inc(grown, **labels)

    def collect():
        stats = response_cache.cache.stats()
        with lock:
            catch_up(hits, stats["hits"])
            catch_up(misses, stats["misses"])
            for reason, count in stats["evictions"].items():
                catch_up(evictions, count, reason=reason)
        entries.set(stats["entries"])

    m.add_collector(collect)


def health_summary(app):
    """The ``performance`` field of ``/bmad/health``: avg and p95 response time, cache hit rate."""
    summary = app.perfstats.summary()
    summary["cache_hit_rate"] = app.response_cache.cache.stats()["hit_rate"]
    return summary


def _router_view(app, names):
    """Call the first accessor in ``names`` the provider router has; {} without a router."""
    llm = getattr(app, "llm", None)
    for name in names:
        accessor = getattr(llm, name, None) if llm is not None else None
        if callable(accessor):
            return accessor()
    return {}


def snapshot(app):
    """Everything ``GET /bmad/performance`` reports."""
    stats = app.perfstats.snapshot()
    stats["cache"] = app.response_cache.stats()
    stats["rate_limits"] = app.limiter.stats()
    dedup = app.dedup.stats()
    stats["dedup"] = {"coalesced": dedup["coalesced"], "in_flight": dedup["in_flight"]}
    stats["connection_pool"] = _router_view(app, ("pool_stats",))
    stats["circuit_breakers"] = _router_view(app, ("breaker_states",))
    stats["history"] = app.perfstats.history()
    return stats
