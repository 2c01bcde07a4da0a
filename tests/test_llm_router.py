"""Routing, failover, round robin, circuit breakers and health checks, against fake upstreams."""

import time

import pytest

from bmad.config import load
from bmad.errors import ConfigError
from tests.fakes.upstream import FakeUpstream
from tests.llm_support import entry, gateway_config, EventLog
from tests.support import FakeClock, poll

MESSAGES = [{"role": "user", "content": "route me"}]


@pytest.fixture
def ups():
    with FakeUpstream("openai") as a, FakeUpstream("openai") as b, FakeUpstream("openai") as c:
        yield a, b, c


def chats(up):
    return [r for r in up.requests if r.route == "chat"]


def ask(client, model="gpt-4o-mini", **extra):
    return client.post("/v1/chat/completions", {"model": model, "messages": MESSAGES, **extra})


# -- order ---------------------------------------------------------------------------------------


def test_priority_fails_over_in_list_order(start_app, client_for, ups):
    a, b, c = ups
    events = EventLog()
    service = start_app(gateway_config(entry(a, "a"), entry(b, "b"), entry(c, "c"),
                                       routing={"strategy": "priority"}), events=events)
    a.fault("status", times=1, status=500)
    b.fault("status", times=1, status=503)
    r = ask(client_for(service))
    assert r.status == 200
    assert (r.getheader("X-BMAD-Provider"), r.getheader("X-BMAD-Attempts")) == ("c", "3")
    assert [len(chats(u)) for u in ups] == [1, 1, 1]
    assert [(e["from_provider"], e["to_provider"]) for e in events.of("provider_failover")] == [("a", "b"), ("b", "c")]
    assert [e["error_type"] for e in events.of("provider_failure")] == ["server_error", "server_error"]
    metrics = client_for(service).get("/bmad/metrics").body.decode()
    assert 'bmad_provider_failovers_total{from_provider="a"} 1.0' in metrics
    assert 'bmad_provider_requests_total{model="gpt-4o-mini",outcome="server_error",provider="a"} 1.0' in metrics
    assert 'bmad_provider_requests_total{model="gpt-4o-mini",outcome="success",provider="c"} 1.0' in metrics


def test_round_robin_rotates_the_first_candidate(start_app, client_for, ups):
    a, b, c = ups
    service = start_app(gateway_config(entry(a, "a"), entry(b, "b"), entry(c, "c")))
    client = client_for(service)
    served = [ask(client).getheader("X-BMAD-Provider") for _ in range(9)]
    assert served == ["a", "b", "c"] * 3


def test_round_robin_follows_the_weights(start_app, client_for, ups):
    a, b, _ = ups
    service = start_app(gateway_config(entry(a, "a", weight=3), entry(b, "b", weight=1)))
    client = client_for(service)
    served = [ask(client).getheader("X-BMAD-Provider") for _ in range(8)]
    assert served.count("a") == 6 and served.count("b") == 2
    assert served[:4] != ["a", "a", "a", "b"] or served[4:] == served[:4]  # interleaved, and periodic


def test_round_robin_fails_over_through_the_rest_in_list_order(start_app, client_for, ups):
    a, b, c = ups
    service = start_app(gateway_config(entry(a, "a"), entry(b, "b"), entry(c, "c")))
    client = client_for(service)
    assert ask(client).getheader("X-BMAD-Provider") == "a"
    b.fault("status", times=1, status=500)  # b goes first next; then a (list order), not c
    r = ask(client)
    assert r.getheader("X-BMAD-Provider") == "a" and r.getheader("X-BMAD-Attempts") == "2"


def test_per_model_strategy(start_app, client_for, ups):
    a, b, _ = ups
    service = start_app(gateway_config(entry(a, "a"), entry(b, "b"),
                                       models={"fixed": ["a/gpt-4o-mini", "b/gpt-4o-mini"]},
                                       routing={"strategy": "round_robin", "per_model": {"fixed": "priority"}}))
    client = client_for(service)
    assert [ask(client, "fixed").getheader("X-BMAD-Provider") for _ in range(4)] == ["a"] * 4
    assert [ask(client, "gpt-4o-mini").getheader("X-BMAD-Provider") for _ in range(2)] == ["a", "b"]


# -- resolution ----------------------------------------------------------------------------------


def test_resolution_aliases_lists_and_provider_prefix(start_app, client_for, ups):
    a, b, _ = ups
    service = start_app(gateway_config(entry(a, "a", models=["gpt-4o-mini"]), entry(b, "b", models=["gpt-4o"]),
                                       models={"smart": [{"provider": "b", "model": "gpt-4o"}]}))
    client = client_for(service)
    r = ask(client, "smart")
    assert (r.getheader("X-BMAD-Provider"), r.getheader("X-BMAD-Model")) == ("b", "gpt-4o")
    assert chats(b)[-1].json["model"] == "gpt-4o"
    assert ask(client, "gpt-4o-mini").getheader("X-BMAD-Provider") == "a"
    r = ask(client, "a/some-other-model")
    assert (r.getheader("X-BMAD-Provider"), r.getheader("X-BMAD-Model")) == ("a", "some-other-model")
    r = ask(client, "gpt-5")
    assert r.status == 404 and r.json["error"]["code"] == "model_not_found"
    r = ask(client, "bmad-default")
    assert r.getheader("X-BMAD-Model") in ("gpt-4o-mini", "gpt-4o")
    assert service.app.llm.route_key("bmad-default") == [["a", "gpt-4o-mini"], ["b", "gpt-4o"]]


def test_a_provider_that_takes_any_model_and_lacks_one_passes_to_the_next(start_app, client_for, ups):
    a, b, _ = ups
    service = start_app(gateway_config(entry(a, "a"), entry(b, "b"), routing={"strategy": "priority"}))
    a.fault("status", times=1, status=404, message="The model `claude-x` does not exist")
    r = ask(client_for(service), "claude-x")
    assert r.status == 200 and r.getheader("X-BMAD-Provider") == "b"


def test_untranslatable_request_skips_the_anthropic_candidate(start_app, client_for):
    with FakeUpstream("anthropic") as claude, FakeUpstream("openai") as oa:
        service = start_app(gateway_config(entry(claude, "claude"), entry(oa, "oa"),
                                           routing={"strategy": "priority"}))
        tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
        r = ask(client_for(service), tools=tools)
        assert r.status == 200 and r.getheader("X-BMAD-Provider") == "oa"
        assert r.getheader("X-BMAD-Attempts") == "1"
        assert chats(claude) == [] and chats(oa)[-1].json["tools"] == tools
        assert service.app.llm.breakers["claude"].consecutive_failures == 0


# -- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault, options, kind", [
    ("status", {"status": 500}, "server_error"),
    ("status", {"status": 502}, "server_error"),
    ("rate_limit", {"retry_after": 1}, "rate_limited"),
    ("hang", {"seconds": 3}, "timeout"),
    ("reset", {}, "connection_error"),
    ("malformed", {}, "invalid_response"),
    ("truncated", {}, "connection_error"),
])
def test_every_retryable_failure_moves_on_at_once(start_app, client_for, ups, fault, options, kind):
    a, b, _ = ups
    events = EventLog()
    service = start_app(gateway_config(entry(a, "a", timeout_seconds=0.3), entry(b, "b"),
                                       routing={"strategy": "priority"}), events=events)
    a.fault(fault, times=1, **options)
    started = time.monotonic()
    r = ask(client_for(service))
    assert r.status == 200 and r.getheader("X-BMAD-Provider") == "b"
    assert time.monotonic() - started < 2
    assert [e["error_type"] for e in events.of("provider_failure")] == [kind]


def test_connection_refused_moves_on(start_app, client_for, ups):
    a, b, _ = ups
    service = start_app(gateway_config(entry(a, "a"), entry(b, "b"), routing={"strategy": "priority"}))
    a.fault("down")
    r = ask(client_for(service))
    assert r.status == 200 and r.getheader("X-BMAD-Provider") == "b"


def test_all_failing_is_502_listing_each_attempt(start_app, client_for, ups):
    a, b, _ = ups
    service = start_app(gateway_config(entry(a, "a"), entry(b, "b"), routing={"strategy": "priority"}))
    a.fault("status", times=1, status=500, message="a is on fire")
    b.fault("malformed", times=1)
    r = ask(client_for(service))
    assert r.status == 502
    assert r.json["error"]["type"] == "all_providers_failed"
    message = r.json["error"]["message"]
    assert "a: server_error (HTTP 500: a is on fire)" in message and "b: invalid_response" in message
    assert r.getheader("X-BMAD-Attempts") == "2"


def test_timeout_last_is_504(start_app, client_for, ups):
    a, b, _ = ups
    service = start_app(gateway_config(entry(a, "a"), entry(b, "b", timeout_seconds=0.3),
                                       routing={"strategy": "priority"}))
    a.fault("status", times=1, status=500)
    b.fault("hang", times=1, seconds=3)
    r = ask(client_for(service))
    assert r.status == 504
    assert r.json["error"]["code"] == "upstream_timeout"
    assert "timeout" in r.json["error"]["message"]


def test_a_slow_answer_times_out_within_the_provider_timeout(start_app, client_for, ups):
    a, _, _ = ups
    service = start_app(gateway_config(entry(a, "a", timeout_seconds=0.4)))
    a.fault("delay", times=1, seconds=2)
    started = time.monotonic()
    assert ask(client_for(service)).status == 504
    assert time.monotonic() - started < 1.5


def test_rate_limit_retry_after_keeps_the_provider_out(start_app, client_for, ups):
    a, b, _ = ups
    clock = FakeClock()
    service = start_app(gateway_config(entry(a, "a"), entry(b, "b"), routing={"strategy": "priority"}),
                        clock=clock)
    client = client_for(service)
    a.fault("rate_limit", times=1, retry_after=30)
    assert ask(client).getheader("X-BMAD-Provider") == "b"
    for _ in range(3):
        r = ask(client)
        assert (r.getheader("X-BMAD-Provider"), r.getheader("X-BMAD-Attempts")) == ("b", "1")
    assert len(chats(a)) == 1
    clock.tick(31)
    assert ask(client).getheader("X-BMAD-Provider") == "a"


def test_none_could_be_tried_is_503_with_retry_after(start_app, client_for, ups):
    a, _, _ = ups
    clock = FakeClock()
    service = start_app(gateway_config(entry(a, "a")), clock=clock)
    client = client_for(service)
    a.fault("rate_limit", times=1, retry_after=20)
    assert ask(client).status == 502
    r = ask(client)
    assert r.status == 503
    assert r.json["error"]["type"] == "all_providers_unavailable"
    assert r.getheader("Retry-After") == "20"
    assert "rate limited" in r.json["error"]["message"]


# -- circuit breakers ------------------------------------------------------------------------------


def test_breaker_opens_skips_then_half_opens_and_closes(start_app, client_for, ups):
    a, b, _ = ups
    clock = FakeClock()
    events = EventLog()
    service = start_app(gateway_config(entry(a, "a"), entry(b, "b"), routing={"strategy": "priority"},
                                       circuit_breaker={"failure_threshold": 2, "recovery_seconds": 60}),
                        clock=clock, events=events)
    client = client_for(service)
    a.fault("status", times=2, status=500)
    ask(client)
    ask(client)
    assert service.app.llm.breaker_states()["a"] == "open"
    status = {p["name"]: p for p in client.get("/bmad/providers").json["providers"]}
    assert status["a"]["circuit_state"] == "open"
    assert 'bmad_circuit_breaker_state{provider="a"} 2.0' in client.get("/bmad/metrics").body.decode()
    for _ in range(3):  # skipped without a request
        r = ask(client)
        assert (r.getheader("X-BMAD-Provider"), r.getheader("X-BMAD-Attempts")) == ("b", "1")
    assert len(chats(a)) == 2
    clock.tick(60)
    r = ask(client)  # the half-open trial goes to a, and succeeds
    assert r.getheader("X-BMAD-Provider") == "a"
    assert service.app.llm.breaker_states()["a"] == "closed"
    assert [(e["provider"], e["from"], e["to"]) for e in events.of("circuit_state_changed")] == [
        ("a", "closed", "open"), ("a", "open", "half_open"), ("a", "half_open", "closed")]
    logged = [(r["from"], r["to"]) for r in service.app.logger.records()
              if r["msg"] == "circuit breaker state changed"]
    assert logged == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_failed_trial_reopens(start_app, client_for, ups):
    a, b, _ = ups
    clock = FakeClock()
    service = start_app(gateway_config(entry(a, "a"), entry(b, "b"), routing={"strategy": "priority"},
                                       circuit_breaker={"failure_threshold": 1, "recovery_seconds": 10}),
                        clock=clock)
    client = client_for(service)
    a.fault("status", times=2, status=500)
    ask(client)
    clock.tick(10)
    assert ask(client).getheader("X-BMAD-Attempts") == "2"  # trial failed, b answered
    assert service.app.llm.breaker_states()["a"] == "open"
    clock.tick(9)
    ask(client)
    assert len(chats(a)) == 2


def test_client_errors_never_open_the_circuit(start_app, client_for, ups):
    a, _, _ = ups
    service = start_app(gateway_config(entry(a, "a"), circuit_breaker={"failure_threshold": 2,
                                                                       "recovery_seconds": 60}))
    a.fault("status", times=5, status=400)
    client = client_for(service)
    for _ in range(5):
        assert ask(client).status == 400
    assert service.app.llm.breaker_states()["a"] == "closed"
    assert ask(client).status == 200


def test_all_circuits_open_is_503(start_app, client_for, ups):
    a, _, _ = ups
    service = start_app(gateway_config(entry(a, "a"), circuit_breaker={"failure_threshold": 1,
                                                                       "recovery_seconds": 45}),
                        clock=FakeClock())
    client = client_for(service)
    a.fault("status", times=1, status=500)
    assert ask(client).status == 502
    r = ask(client)
    assert r.status == 503 and r.getheader("Retry-After") == "45"
    assert "a: circuit open" in r.json["error"]["message"]
    health = client.get("/bmad/health").json
    assert health["status"] == "degraded"
    assert health["checks"]["providers"]["available"] == 0


# -- health checks ---------------------------------------------------------------------------------


def test_health_checks_mark_a_provider_down_and_up(start_app, client_for, ups):
    a, b, _ = ups
    service = start_app(gateway_config(entry(a, "a"), entry(b, "b"), routing={"strategy": "priority"}))
    client = client_for(service)
    health = service.app.llm.health
    a.fault("status", health=True, status=503)
    health.check_all()
    status = {p["name"]: p for p in client.get("/bmad/providers").json["providers"]}
    assert status["a"]["healthy"] is False
    assert status["a"]["last_error"].startswith("server_error")
    assert status["a"]["last_check"].endswith("Z")
    assert status["b"]["healthy"] is True
    r = ask(client)
    assert r.getheader("X-BMAD-Provider") == "b" and chats(a) == []
    assert client.get("/bmad/health").json["checks"]["providers"]["available"] == 1
    assert 'bmad_provider_up{provider="a"} 0.0' in client.get("/bmad/metrics").body.decode()
    a.clear_faults()
    health.check_all()
    assert ask(client).getheader("X-BMAD-Provider") == "a"
    assert [p["healthy"] for p in client.get("/bmad/providers").json["providers"]] == [True, True]


def test_health_checks_use_each_providers_models_endpoint(start_app):
    with FakeUpstream("openai") as a, FakeUpstream("anthropic") as b, FakeUpstream("azure") as c:
        service = start_app(gateway_config(entry(a, "a"), entry(b, "b"), entry(c, "c")))
        service.app.llm.health.check_all()
        assert [(r.method, r.path) for r in a.requests] == [("GET", "/v1/models")]
        assert [(r.method, r.path) for r in b.requests] == [("GET", "/v1/models")]
        assert b.requests[0].headers["anthropic-version"] == "2023-06-01"
        assert [(r.method, r.path) for r in c.requests] == [("GET", "/openai/models")]
        assert c.requests[0].query["api-version"]


def test_the_background_thread_checks_and_requests_never_do(start_app, client_for, ups):
    a, _, _ = ups
    service = start_app(gateway_config(entry(a, "a"), health_checks={"interval_seconds": 0.05}))
    a.wait_for_requests(2, timeout=5)  # at least two rounds
    assert all(r.route == "health" for r in a.requests)
    a.fault("status", health=True, status=500)
    poll(lambda: not service.app.llm.health.healthy("a"), timeout=5, interval=0.02)
    assert not service.app.llm.health.healthy("a")
    off = start_app(gateway_config(entry(ups[1], "b")))
    client = client_for(off)
    for _ in range(5):
        ask(client)
    assert all(r.route == "chat" for r in ups[1].requests)


def test_health_summary_and_offline_only(start_app, client_for):
    service = start_app(gateway_config(providers=[]))
    health = client_for(service).get("/bmad/health").json
    assert health["status"] == "healthy"  # probes on a laptop pass
    check = health["checks"]["providers"]
    assert {k: check[k] for k in ("status", "mode", "available", "total", "providers")} == {
        "status": "ok", "mode": "offline-only", "available": 1, "total": 1, "providers": {"offline": True}}
    assert "no LLM provider is configured" in check["message"]


# -- status and accounting -------------------------------------------------------------------------


def test_providers_endpoint_fields(start_app, client_for, ups):
    a, b, _ = ups
    service = start_app(gateway_config(entry(a, "a", models=["gpt-4o-mini"]), entry(b, "b"),
                                       routing={"strategy": "priority"}))
    client = client_for(service)
    a.fault("status", times=1, status=500)
    ask(client)
    ask(client)
    body = client.get("/bmad/providers").json
    assert body["status"] == "success"
    first = body["providers"][0]
    assert list(first) == ["name", "type", "host", "models", "healthy", "circuit_state", "last_check", "last_error",
                           "requests", "failures", "success_rate", "avg_latency_ms", "p95_latency_ms",
                           "prompt_tokens", "completion_tokens", "cost_usd"]
    assert first["host"] == f"127.0.0.1:{a.port}"
    assert (first["requests"], first["failures"], first["success_rate"]) == (2, 1, 0.5)
    assert first["prompt_tokens"] == 11 and first["completion_tokens"] == 7
    assert first["cost_usd"] == pytest.approx((11 * 0.15 + 7 * 0.6) / 1e6)
    assert first["p95_latency_ms"] >= first["avg_latency_ms"] / 2 > 0


def test_token_and_cost_metrics_bound_their_model_labels(start_app, client_for, ups):
    a, _, _ = ups
    service = start_app(gateway_config(entry(a, "a", models=["gpt-4o-mini"]),
                                       models={"x": ["a/made-up-model-1"]}))
    client = client_for(service)
    ask(client)
    for i in range(5):
        ask(client, f"a/random-{i}")
    metrics = client.get("/bmad/metrics").body.decode()
    assert 'bmad_llm_tokens_total{kind="prompt",model="gpt-4o-mini",provider="a"} 11.0' in metrics
    assert 'bmad_llm_tokens_total{kind="completion",model="other",provider="a"} 35.0' in metrics
    assert 'bmad_llm_cost_usd_total{model="gpt-4o-mini",provider="a"}' in metrics
    assert "random-" not in metrics
    assert 'bmad_provider_request_duration_seconds_count{provider="a"} 6.0' in metrics


def test_provider_request_events_carry_numbers_not_text(start_app, client_for, ups):
    a, _, _ = ups
    events = EventLog()
    service = start_app(gateway_config(entry(a, "a", models=["gpt-4o-mini"])), events=events)
    ask(client_for(service, {"X-User-ID": "alice"}))
    [event] = events.of("provider_request")
    assert event["provider"] == "a" and event["model"] == "gpt-4o-mini" and event["status"] == "success"
    assert event["user_id"] == "alice"
    assert (event["prompt_tokens"], event["completion_tokens"]) == (11, 7)
    assert event["cost_usd"] > 0 and event["latency_ms"] > 0
    assert "route me" not in repr(events.events) and "reply to" not in repr(events.events)


# -- configuration ---------------------------------------------------------------------------------


def router_for(make_config, data, environ=None):
    from bmad.app import build_app
    app = build_app(make_config(gateway_config(**data), environ), environ=environ or {})
    app.llm.close()
    return app.llm


@pytest.mark.parametrize("data, key", [
    ({"providers": [{"type": "gpt"}]}, "providers[0].type"),
    ({"providers": [{"type": "openai", "bogus": 1}]}, "providers[0].bogus"),
    ({"providers": [{"type": "openai", "base_url": "ftp://x"}]}, "providers[0].base_url"),
    ({"providers": [{"type": "openai", "base_url": "https://u:p@x"}]}, "providers[0].base_url"),
    ({"providers": [{"type": "azure"}]}, "providers[0].base_url"),
    ({"providers": [{"type": "openai", "api_key_env": "NOPE"}]}, "providers[0].api_key_env"),
    ({"providers": [{"type": "openai", "timeout_seconds": 0}]}, "providers[0].timeout_seconds"),
    ({"providers": [{"type": "openai", "weight": -1}]}, "providers[0].weight"),
    ({"providers": [{"type": "openai", "models": []}]}, "providers[0].models"),
    ({"providers": [{"type": "openai"}, {"type": "openai"}]}, "providers[1].name"),
    ({"providers": [{"type": "openai", "deployment": "d"}]}, "providers[0].deployment"),
    ({"providers": [{"type": "offline", "base_url": "http://x"}]}, "providers[0].base_url"),
    ({"models": {"x": [{"provider": "nope", "model": "m"}]}}, "models.x[0]"),
    ({"models": {"x": []}}, "models.x"),
    ({"routing": {"strategy": "random"}}, "routing.strategy"),
    ({"routing": {"per_model": {"x": "fastest"}}}, "routing.per_model.x"),
    ({"pricing": {"m": {"input_per_mtok": -1, "output_per_mtok": 1}}}, "pricing.m.input_per_mtok"),
    ({"pricing": {"m": {"input_per_mtok": 1}}}, "pricing.m.output_per_mtok"),
    ({"circuit_breaker": {"failure_threshold": 0}}, "circuit_breaker.failure_threshold"),
])
def test_config_mistakes_name_the_key(make_config, data, key):
    with pytest.raises(ConfigError) as caught:
        router_for(make_config, data)
    assert key in str(caught.value)


def test_environment_shortcuts_add_a_provider_each(make_config):
    environ = {"OPENAI_API_KEY": "sk-env-openai-123456", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
               "ANTHROPIC_API_KEY": "sk-ant-env", "AZURE_OPENAI_API_KEY": "azkey",
               "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com", "AZURE_OPENAI_DEPLOYMENT": "gpt4o-dep",
               "AZURE_OPENAI_API_VERSION": "2025-01-01-preview"}
    llm = router_for(make_config, {}, environ)
    specs = {p.name: p.spec for p in llm.providers}
    assert list(specs) == ["openai", "anthropic", "azure"]
    assert specs["openai"].hostport == "127.0.0.1:9" and specs["openai"].base_path == "/v1"
    assert specs["anthropic"].hostport == "api.anthropic.com:443"
    assert specs["azure"].deployment == "gpt4o-dep" and specs["azure"].api_version == "2025-01-01-preview"
    assert [[p, m] for p, m in llm.route_key("bmad-default")] == [
        ["openai", "gpt-4o-mini"], ["anthropic", "claude-haiku-4-5"], ["azure", "gpt4o-dep"]]
    assert "sk-env-openai" not in repr(specs)


def test_configured_provider_wins_over_the_environment_one(make_config):
    llm = router_for(make_config, {"providers": [{"name": "openai", "type": "openai", "api_key": "sk-cfg-key-1234",
                                                  "models": ["gpt-4.1"]}]}, {"OPENAI_API_KEY": "sk-env-key-1234"})
    assert len(llm.providers) == 1 and llm.providers[0].spec.api_key == "sk-cfg-key-1234"


def test_azure_environment_needs_endpoint_and_deployment(make_config):
    with pytest.raises(ConfigError) as caught:
        router_for(make_config, {}, {"AZURE_OPENAI_API_KEY": "k", "AZURE_OPENAI_ENDPOINT": "https://x"})
    assert "AZURE_OPENAI_DEPLOYMENT" in str(caught.value)


def test_api_key_env_reads_the_environment(make_config):
    llm = router_for(make_config, {"providers": [{"name": "p", "type": "anthropic", "api_key_env": "MY_KEY"}]},
                     {"MY_KEY": "from-env"})
    assert llm.providers[0].spec.api_key == "from-env"


def test_offline_only_when_nothing_is_configured_or_listed(make_config):
    assert [p.name for p in router_for(make_config, {}).providers] == ["offline"]
    llm = router_for(make_config, {"providers": [{"type": "openai", "api_key": "k"}, {"type": "offline"}]})
    assert [p.type for p in llm.providers] == ["openai", "offline"]
    llm = router_for(make_config, {"providers": [{"type": "openai", "api_key": "k"}]})
    assert [p.type for p in llm.providers] == ["openai"]


def test_defaults_are_the_schema():
    config = load(environ={})
    assert config["providers"] == [] and config["models"] == {}
    assert config.at("routing.strategy") == "round_robin"
    assert config.at("circuit_breaker.failure_threshold") == 5
    assert config.at("circuit_breaker.recovery_seconds") == 120.0
    assert config.at("health_checks.interval_seconds") == 300.0


def test_offline_only_startup_warns_and_a_real_provider_is_live(start_app, client_for, ups):
    offline = start_app(gateway_config(providers=[]))
    warnings = [r for r in offline.app.logger.records() if r["level"] == "warning"]
    assert any("no LLM provider is configured" in r["msg"] for r in warnings)
    live = start_app(gateway_config(entry(ups[0], "a"), providers_required=True))
    check = client_for(live).get("/bmad/health").json["checks"]["providers"]
    assert check["mode"] == "live" and "message" not in check
    assert not any("no LLM provider" in r["msg"] for r in live.app.logger.records())


def test_providers_required_refuses_to_build_without_a_real_provider(make_config):
    with pytest.raises(ConfigError) as caught:
        router_for(make_config, {"providers": [], "providers_required": True})
    assert "providers_required" in str(caught.value)
    with pytest.raises(ConfigError):
        router_for(make_config, {"providers": [{"type": "offline"}], "providers_required": True})
    assert router_for(make_config, {"providers_required": True}, {"ANTHROPIC_API_KEY": "sk-ant-x"}).providers
