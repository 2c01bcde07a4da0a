"""Rate limits, /bmad/performance and the health summary over real sockets (fake clock, no waiting)."""

from tests.llm_support import EventLog as RecordingEvents
from tests.support import FakeClock, eventually

KEYS = {"auth": {"api_keys": [{"key": "alice-key", "user": "alice"}, {"key": "bob-key", "user": "bob"}]}}
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")


def test_the_101st_api_request_in_a_minute_is_refused(start_app, client_for):
    clock = FakeClock()
    events = RecordingEvents()
    service = start_app(clock=clock, events=events)
    client = client_for(service)
    for i in range(100):
        resp = client.get("/bmad/tools")
        assert resp.status == 200, resp.body
        assert resp.getheader("RateLimit-Limit") == "100"
        assert resp.getheader("RateLimit-Remaining") == str(99 - i)
        assert resp.getheader("RateLimit-Policy") == "100;w=60"
    resp = client.get("/bmad/tools")
    assert resp.status == 429
    assert resp.getheader("Retry-After") == "1"
    assert all(resp.getheader(h) is not None for h in RATE_HEADERS)
    assert resp.getheader("RateLimit-Remaining") == "0"
    assert resp.getheader("RateLimit-Reset") == "60"
    assert resp.json["status"] == "error" and resp.json["error"]["type"] == "rate_limited"
    assert "100 per minute" in resp.json["error"]["message"]
    assert events.events == [("rate_limited", {"client": "127.0.0.1", "route": "/bmad/tools", "class": "api"})]
    metrics = client.get("/bmad/metrics").body.decode()
    assert 'bmad_rate_limited_total{class="api"} 1.0' in metrics
    assert 'bmad_rate_limited_total{class="provider"} 0.0' in metrics
    clock.tick(0.61)  # one token back (one every 0.6 s)
    assert client.get("/bmad/tools").status == 200
    assert client.get("/bmad/tools").status == 429


def test_health_and_metrics_are_not_limited(start_app, client_for):
    service = start_app(clock=FakeClock(), data={"rate_limits": {"api": {"per_minute": 1, "burst": 1}}})
    client = client_for(service)
    for _ in range(5):
        for path in ("/bmad/health", "/bmad/metrics"):
            resp = client.get(path)
            assert resp.status == 200 and resp.getheader("RateLimit-Limit") is None
    assert client.get("/bmad/tools").status == 200
    assert client.get("/bmad/tools").status == 429


def test_a_users_overrides_apply(start_app, client_for):
    data = dict(KEYS, rate_limits={"api": {"per_minute": 5, "burst": 5},
                                   "overrides": {"alice": {"api": {"per_minute": 20, "burst": 8}}}})
    service = start_app(clock=FakeClock(), data=data)
    alice = client_for(service, {"Authorization": "Bearer alice-key"})
    bob = client_for(service, {"Authorization": "Bearer bob-key"})
    alice_codes = [alice.get("/bmad/tools").status for _ in range(9)]
    bob_codes = [bob.get("/bmad/tools").status for _ in range(6)]
    assert alice_codes == [200] * 8 + [429]
    assert bob_codes == [200] * 5 + [429]
    resp = alice.get("/bmad/tools")
    assert resp.getheader("RateLimit-Policy") == "20;w=60" and resp.getheader("RateLimit-Limit") == "20"
    assert resp.getheader("Retry-After") == "3"  # 20/min: a token every 3 s


def test_unauthenticated_requests_do_not_spend_a_users_tokens(start_app, client_for):
    data = dict(KEYS, rate_limits={"api": {"per_minute": 1, "burst": 1}})
    service = start_app(clock=FakeClock(), data=data)
    anonymous = client_for(service)
    for _ in range(3):
        assert anonymous.get("/bmad/tools").status == 401
    assert client_for(service, {"Authorization": "Bearer alice-key"}).get("/bmad/tools").status == 200


def test_forwarded_for_is_only_trusted_when_configured(start_app, client_for):
    limits = {"api": {"per_minute": 1, "burst": 1}}
    untrusted = client_for(start_app(clock=FakeClock(), data={"rate_limits": limits}))
    assert untrusted.get("/bmad/tools", headers={"X-Forwarded-For": "203.0.113.1"}).status == 200
    assert untrusted.get("/bmad/tools", headers={"X-Forwarded-For": "203.0.113.2"}).status == 429

    trusted = client_for(start_app(clock=FakeClock(), data={"rate_limits": limits,
                                                            "server": {"trust_proxy": True}}))
    assert trusted.get("/bmad/tools", headers={"X-Forwarded-For": "203.0.113.1, 10.0.0.1"}).status == 200
    assert trusted.get("/bmad/tools", headers={"X-Forwarded-For": "203.0.113.2, 10.0.0.1"}).status == 200
    assert trusted.get("/bmad/tools", headers={"X-Forwarded-For": "203.0.113.1"}).status == 429


def test_limits_can_be_switched_off(start_app, client_for):
    service = start_app(clock=FakeClock(), data={"rate_limits": {"enabled": False,
                                                                 "api": {"per_minute": 1, "burst": 1}}})
    client = client_for(service)
    for _ in range(3):
        resp = client.get("/bmad/tools")
        assert resp.status == 200 and resp.getheader("RateLimit-Limit") is None


def test_performance_endpoint(start_app, client_for):
    keys = [*KEYS["auth"]["api_keys"], {"key": "root-key", "user": "root", "role": "admin"}]
    service = start_app(data={"auth": {"api_keys": keys}})
    client = client_for(service, {"Authorization": "Bearer root-key"})
    assert client_for(service).get("/bmad/performance").status == 401
    for _ in range(3):
        client.get("/bmad/tools")
    client.get("/bmad/tools/no-such-tool")
    eventually(lambda: service.app.perfstats.total_requests >= 5)
    resp = client.get("/bmad/performance")
    assert resp.status == 200 and resp.getheader("RateLimit-Policy") == "100;w=60"
    body = resp.json
    assert body["status"] == "success"
    stats = body["stats"]
    for key in ("total_requests", "requests_per_minute", "avg_response_ms", "p50_ms", "p95_ms", "p99_ms",
                "by_route", "cache", "rate_limits", "dedup", "connection_pool", "circuit_breakers"):
        assert key in stats, key
    assert stats["by_route"]["/bmad/tools"]["count"] == 3
    assert stats["by_route"]["/bmad/tools/{tool_id}"] == {
        "count": 1, "avg_ms": stats["by_route"]["/bmad/tools/{tool_id}"]["avg_ms"],
        "p95_ms": stats["by_route"]["/bmad/tools/{tool_id}"]["p95_ms"], "errors": 0}
    assert stats["rate_limits"]["api"]["allowed"] >= 5 and stats["rate_limits"]["provider"] == {
        "allowed": 0, "limited": 0}
    assert stats["dedup"] == {"coalesced": 0, "in_flight": 0}
    assert {"hits", "misses", "hit_rate", "entries", "evictions"} <= set(stats["cache"])
    assert stats["p50_ms"] > 0


def test_health_gains_a_performance_summary(start_app, client_for):
    service = start_app()
    client = client_for(service)
    client.get("/bmad/tools")
    eventually(lambda: service.app.perfstats.total_requests >= 1)
    performance = client.get("/bmad/health").json["performance"]
    assert set(performance) == {"avg_response_ms", "p95_ms", "cache_hit_rate"}
    assert performance["avg_response_ms"] > 0


def test_cache_metrics_are_exposed(start_app, client_for):
    service = start_app()
    cache = service.app.response_cache
    cache.store("k", b"v")
    cache.lookup("k")
    cache.lookup("missing")
    text = client_for(service).get("/bmad/metrics").body.decode()
    assert "bmad_cache_hits_total 1.0\n" in text
    assert "bmad_cache_misses_total 1.0\n" in text
    assert "bmad_cache_entries 1.0\n" in text
    assert 'bmad_cache_evictions_total{reason="capacity"} 0.0\n' in text
    assert "bmad_dedup_coalesced_total 0.0\n" in text
