"""Token-bucket limiter: refill, burst, Retry-After arithmetic, overrides, eviction, client ids."""

import pytest

from bmad.config import load
from bmad.errors import ConfigError, TooManyRequests
from bmad.http.ratelimit import Policy, RateLimiter, RateLimitGuard, client_of, policies_from_config
from bmad.http.request import Request
from bmad.http.auth import Principal
from bmad.http.router import Route
from tests.support import FakeClock

DEFAULTS = {"api": Policy(100, 100), "workflow": Policy(10, 10), "provider": Policy(50, 5)}


def limiter(clock, **kw):
    return RateLimiter(DEFAULTS, kw.pop("overrides", None), clock=clock, **kw)


def test_a_full_burst_then_refusal_with_retry_after():
    clock = FakeClock()
    rl = limiter(clock)
    decisions = [rl.acquire("1.2.3.4", "api") for _ in range(101)]
    assert all(d.allowed for d in decisions[:100])
    assert [d.remaining for d in decisions[:3]] == [99, 98, 97]
    last = decisions[100]
    assert not last.allowed and last.remaining == 0
    assert last.retry_after == 1  # one token comes back every 0.6 s; whole seconds, at least 1
    assert last.reset_seconds == 60
    assert last.headers() == {"RateLimit-Limit": "100", "RateLimit-Remaining": "0",
                              "RateLimit-Reset": "60", "RateLimit-Policy": "100;w=60"}
    assert rl.stats()["api"] == {"allowed": 100, "limited": 1}


def test_refill_is_per_minute_over_sixty_seconds():
    clock = FakeClock()
    rl = limiter(clock)
    for _ in range(5):
        assert rl.acquire("c", "provider").allowed
    refused = rl.acquire("c", "provider")
    assert not refused.allowed and refused.retry_after == 2  # 50/min: 1.2 s per token -> ceil
    clock.tick(1.19)
    assert not rl.acquire("c", "provider").allowed
    clock.tick(0.02)
    assert rl.acquire("c", "provider").allowed
    assert not rl.acquire("c", "provider").allowed


def test_the_burst_caps_saved_tokens():
    clock = FakeClock()
    rl = limiter(clock)
    rl.acquire("c", "provider")
    clock.tick(3600)
    results = [rl.acquire("c", "provider").allowed for _ in range(6)]
    assert results == [True] * 5 + [False]


def test_retry_after_for_a_slow_class():
    clock = FakeClock()
    rl = limiter(clock)
    for _ in range(10):
        rl.acquire("c", "workflow")
    refused = rl.acquire("c", "workflow")
    assert refused.retry_after == 6 and refused.reset_seconds == 60
    clock.tick(5.5)
    assert rl.acquire("c", "workflow").retry_after == 1


def test_classes_and_clients_have_separate_buckets():
    clock = FakeClock()
    rl = limiter(clock)
    for _ in range(5):
        rl.acquire("a", "provider")
    assert not rl.acquire("a", "provider").allowed
    assert rl.acquire("b", "provider").allowed
    assert rl.acquire("a", "api").allowed


def test_overrides_apply_to_their_client_only():
    clock = FakeClock()
    rl = limiter(clock, overrides={("alice", "provider"): Policy(500, 20)})
    assert sum(rl.acquire("alice", "provider").allowed for _ in range(25)) == 20
    assert sum(rl.acquire("bob", "provider").allowed for _ in range(25)) == 5
    assert rl.acquire("alice", "provider").policy.header == "500;w=60"


def test_a_clock_stepping_backwards_mints_nothing():
    clock = FakeClock()
    rl = limiter(clock)
    for _ in range(5):
        rl.acquire("c", "provider")
    clock.tick(-1000)
    assert not rl.acquire("c", "provider").allowed


@pytest.mark.slow
def test_many_distinct_clients_keep_the_table_bounded():
    clock = FakeClock()
    rl = limiter(clock, max_clients=1000)
    for i in range(100_000):
        rl.acquire(f"client-{i}", "api")
        assert len(rl) <= 1000
    assert len(rl) == 1000


def test_idle_buckets_are_dropped_once_refilled():
    clock = FakeClock()
    rl = limiter(clock)
    for i in range(500):
        rl.acquire(f"idle-{i}", "api")
    assert len(rl) == 500
    clock.tick(61)  # every bucket is full again: the same as having none
    for _ in range(64):
        rl.acquire("busy", "api")
    assert len(rl) == 1


def test_lru_eviction_keeps_the_recently_used_bucket():
    clock = FakeClock()
    rl = limiter(clock, max_clients=2)
    for _ in range(5):
        rl.acquire("a", "provider")
    rl.acquire("b", "provider")
    rl.acquire("a", "provider")  # a is now the most recently used
    rl.acquire("c", "provider")  # evicts b
    assert not rl.acquire("a", "provider").allowed


class TestConfig:
    def test_defaults_from_config(self):
        rl = RateLimiter.from_config(load(environ={}), clock=FakeClock())
        assert {k: rl.policies[k] for k in DEFAULTS} == DEFAULTS and rl.max_clients == 50_000 and rl.enabled

    def test_overrides_shape_and_partial_values(self):
        section = load(environ={}, data={"rate_limits": {"overrides": {
            "alice": {"provider": {"per_minute": 500, "burst": 20}}, "bob": {"api": {"burst": 7}}}}})["rate_limits"]
        _, overrides = policies_from_config(section)
        assert overrides == {("alice", "provider"): Policy(500, 20), ("bob", "api"): Policy(100, 7)}

    @pytest.mark.parametrize("overrides,key", [
        ({"alice": 5}, "rate_limits.overrides.alice"),
        ({"alice": {}}, "rate_limits.overrides.alice"),
        ({"alice": {"chat": {"per_minute": 1}}}, "rate_limits.overrides.alice.chat"),
        ({"alice": {"api": [1]}}, "rate_limits.overrides.alice.api"),
        ({"alice": {"api": {"rate": 1}}}, "rate_limits.overrides.alice.api.rate"),
        ({"alice": {"api": {"per_minute": 0}}}, "rate_limits.overrides.alice.api.per_minute"),
        ({"alice": {"api": {"burst": 1.5}}}, "rate_limits.overrides.alice.api.burst"),
        ({"alice": {"api": {"burst": True}}}, "rate_limits.overrides.alice.api.burst"),
    ])
    def test_bad_overrides_name_the_key(self, overrides, key):
        config = load(environ={}, data={"rate_limits": {"overrides": overrides}})
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            RateLimiter.from_config(config)

    def test_bad_class_policy_names_the_key(self):
        config = load(environ={}, data={"rate_limits": {"api": {"burst": 0}}})
        with pytest.raises(ConfigError, match=r"rate_limits\.api\.burst"):
            RateLimiter.from_config(config)
        config = load(environ={}, data={"rate_limits": {"max_clients": 0}})
        with pytest.raises(ConfigError, match=r"rate_limits\.max_clients"):
            RateLimiter.from_config(config)


def request(headers=None, ip="10.0.0.9", user=None, rate_class="api"):
    req = Request("GET", "/x", "", headers or {}, client_ip=ip)
    req.principal = Principal(user) if user else None
    req.route = Route("GET", "/x", None, rate_class=rate_class)
    return req


class TestClientOf:
    def test_user_when_keys_authenticate(self):
        assert client_of(request(user="alice"), by_user=True, trust_proxy=False) == "alice"

    def test_ip_in_open_mode(self):
        assert client_of(request(user="alice"), by_user=False, trust_proxy=False) == "10.0.0.9"

    def test_forwarded_for_only_when_trusted(self):
        req = request({"x-forwarded-for": "203.0.113.7, 10.0.0.1"})
        assert client_of(req, by_user=False, trust_proxy=False) == "10.0.0.9"
        assert client_of(req, by_user=False, trust_proxy=True) == "203.0.113.7"

    @pytest.mark.parametrize("value", ["not-an-ip", "", " , 1.2.3.4", "1" * 500])
    def test_a_bad_forwarded_for_falls_back_to_the_peer(self, value):
        assert client_of(request({"x-forwarded-for": value}), by_user=False, trust_proxy=True) == "10.0.0.9"


class TestGuard:
    def test_headers_on_allowed_and_429_on_refused(self):
        seen = []
        guard = RateLimitGuard(limiter(FakeClock()), by_user=False, trust_proxy=False,
                               on_limited=lambda *a: seen.append(a))
        for _ in range(10):
            req = request(rate_class="workflow")
            guard(req)
            assert req.response_headers["RateLimit-Policy"] == "10;w=60"
        req = request(rate_class="workflow")
        with pytest.raises(TooManyRequests) as caught:
            guard(req)
        assert caught.value.status == 429 and caught.value.type == "rate_limited"
        assert caught.value.headers == {"Retry-After": "6"}
        assert req.response_headers["RateLimit-Remaining"] == "0"
        assert seen == [("10.0.0.9", "workflow", "/x")]

    def test_provider_routes_are_left_to_the_pipeline(self):
        rl = limiter(FakeClock())
        guard = RateLimitGuard(rl, by_user=False, trust_proxy=False)
        req = request(rate_class="provider")
        guard(req)
        assert req.response_headers == {} and len(rl) == 0 and guard.client(req) == "10.0.0.9"

    def test_unlimited_routes_and_disabled_limiter_pass_untouched(self):
        rl = limiter(FakeClock())
        guard = RateLimitGuard(rl, by_user=False, trust_proxy=False)
        req = request(rate_class=None)
        guard(req)
        assert req.response_headers == {} and len(rl) == 0
        rl.enabled = False
        req = request()
        guard(req)
        assert req.response_headers == {} and len(rl) == 0


def test_the_sixth_quick_model_call_gets_a_429_naming_the_setting(start_app, client_for):
    """The shipped provider limit (50/min, burst 5) as a newcomer meets it, over a real socket."""
    service = start_app(clock=FakeClock())
    client = client_for(service)
    body = {"model": "bmad-default", "messages": [{"role": "user", "content": "hi"}]}
    statuses = [client.post("/v1/chat/completions", body, headers={"Cache-Control": "no-store"}).status
                for _ in range(5)]
    assert statuses == [200] * 5
    r = client.post("/v1/chat/completions", body)
    assert r.status == 429 and r.getheader("Retry-After")
    message = r.json["error"]["message"]
    assert "50 per minute, burst 5" in message
    assert "rate_limits.provider" in message and "rate_limits.overrides" in message
