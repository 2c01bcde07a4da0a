"""Two gateways on one real Redis: limits and cached answers are shared; an outage degrades, never lies."""

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.servers import redis_process
from tests.support import CapturedLogger

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
KEYS = {"auth": {"api_keys": [{"key": "alice-key-1", "user": "alice"}]}}
ALICE = {"Authorization": "Bearer alice-key-1"}


@pytest.fixture
def redis():
    with redis_process() as server:
        yield server


def _config(up, redis, **state):
    return {**KEYS, "providers": [{"name": "up", "type": "openai", "base_url": up.base_url, "api_key": "sk-up",
                                   "models": ["gpt-4o-mini"]}],
            "state": {"redis_url": redis.url(), **state}}


def test_a_users_provider_limit_holds_across_gateways(start_app, client_for, redis):
    with FakeUpstream("openai") as up:
        one, two = (client_for(start_app(_config(up, redis)), ALICE) for _ in range(2))
        statuses = [(one if i % 2 else two).post("/v1/chat/completions", dict(CHAT, temperature=i / 10)).status
                    for i in range(8)]
    assert statuses.count(200) == 5 and statuses[5:] == [429, 429, 429]  # burst 5, whichever gateway answers


def test_an_answer_cached_through_one_gateway_is_a_hit_through_the_other(start_app, client_for, redis):
    with FakeUpstream("openai") as up:
        one, two = (client_for(start_app(_config(up, redis)), ALICE) for _ in range(2))
        first = one.post("/v1/chat/completions", CHAT)
        second = two.post("/v1/chat/completions", CHAT)
        assert sum(r.route == "chat" for r in up.requests) == 1
    assert first.getheader("X-Cache") == "MISS" and second.getheader("X-Cache") == "HIT"
    assert second.json["choices"] == first.json["choices"] and second.getheader("X-BMAD-Attempts") == "0"


def test_redis_down_fails_closed_then_recovers(start_app, client_for, redis):
    with FakeUpstream("openai") as up:
        logger = CapturedLogger()
        service = start_app(_config(up, redis), logger=logger)
        client = client_for(service, ALICE)
        assert client.post("/v1/chat/completions", CHAT).status == 200
        redis.stop()
        refused = client.post("/v1/chat/completions", dict(CHAT, temperature=0.5))
        again = client.post("/v1/chat/completions", dict(CHAT, temperature=0.6))
        health = client.get("/bmad/health").json
        metrics = client.get("/bmad/metrics").body.decode()
        redis.start()
        back = client.post("/v1/chat/completions", dict(CHAT, temperature=0.7))
        recovered = client.get("/bmad/health").json
    assert refused.status == 503 and refused.json["error"]["type"] == "state_unavailable"
    assert "state.on_redis_error" in refused.json["error"]["message"] and again.status == 503
    assert health["status"] == "degraded" and health["checks"]["state"]["status"] == "degraded"
    assert 'bmad_state_backend_up{backend="redis"} 0' in metrics
    assert back.status == 200 and recovered["checks"]["state"]["status"] == "ok"
    outages = [r for r in logger.records() if r["msg"] == "shared state backend unreachable"]
    assert len(outages) == 1  # logged once per outage, not per request
    assert redis.password not in logger.text() and redis.password not in metrics


def test_health_probes_redis_without_traffic(start_app, client_for, redis):
    client = client_for(start_app({"state": {"redis_url": redis.url()}}))
    assert client.get("/bmad/health").json["checks"]["state"]["status"] == "ok"
    redis.stop()
    down = client.get("/bmad/health").json
    assert down["status"] == "degraded" and down["checks"]["state"]["reason"]


def test_open_local_falls_back_to_this_process_buckets(start_app, client_for, redis):
    with FakeUpstream("openai") as up:
        client = client_for(start_app(_config(up, redis, on_redis_error="open_local")), ALICE)
        redis.stop()
        statuses = [client.post("/v1/chat/completions", dict(CHAT, temperature=i / 10)).status for i in range(7)]
    assert statuses == [200] * 5 + [429, 429]


def test_a_bad_redis_setting_stops_startup_naming_it(make_config):
    from bmad.app import build_app
    from bmad.errors import ConfigError
    with pytest.raises(ConfigError) as caught:
        build_app(make_config({"state": {"redis_url": "http://nope"}}), environ={})
    assert "state.redis_url" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        build_app(make_config({"state": {"redis_url": "redis://127.0.0.1:1/0", "on_redis_error": "maybe"}}),
                  environ={})
    assert "state.on_redis_error" in str(caught.value)


def test_print_config_masks_the_redis_password(make_config):
    from bmad.config import redacted
    config = make_config({"state": {"redis_url": "redis://:hunter2@127.0.0.1:6379/0"}})
    assert redacted(config.at("state"))["redis_url"] == "redis://:***@127.0.0.1:6379/0"


def test_identical_concurrent_calls_to_two_gateways_make_one_upstream_call(start_app, client_for, redis):
    import threading
    with FakeUpstream("openai", delay_seconds=0.5) as up:
        services = [start_app(_config(up, redis, on_redis_error="closed")) for _ in range(2)]
        results = []

        def ask(service):
            resp = client_for(service, ALICE).post("/v1/chat/completions", CHAT, headers={"Cache-Control": "no-cache"})
            results.append((resp.status, resp.getheader("X-Dedup"), resp.json["choices"]))
        threads = [threading.Thread(target=ask, args=(services[i % 2],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        calls = sum(r.route == "chat" for r in up.requests)
    assert calls == 1 and [r[0] for r in results] == [200] * 4
    assert sorted(r[1] or "" for r in results) == ["", "coalesced", "coalesced", "coalesced"]
    assert all(r[2] == results[0][2] for r in results)
