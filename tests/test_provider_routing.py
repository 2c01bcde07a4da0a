"""Which provider gets a model: shortcut patterns, globs, health-listed models, type prefixes, unknown models,
base URLs with or without /v1, GET /v1/models/{id}, and request ids both ways."""

import pytest

from tests.support import FakeClock
from tests.fakes.upstream import FakeUpstream
from tests.llm_support import entry, gateway_config, EventLog

MESSAGES = [{"role": "user", "content": "which one?"}]


def ask(client, model, **extra):
    return client.post("/v1/chat/completions", {"model": model, "messages": MESSAGES, **extra})


def chats(up):
    return [r for r in up.requests if r.route == "chat"]


def served_by(client, model, times=4):
    return [ask(client, model).getheader("X-BMAD-Provider") for _ in range(times)]


def router_for(make_config, data, environ=None):
    from bmad.app import build_app
    app = build_app(make_config(gateway_config(**data), environ), environ=environ or {})
    app.llm.close()
    return app.llm


# -- the environment shortcuts -----------------------------------------------------------------


def test_shortcut_providers_serve_their_own_models(make_config):
    llm = router_for(make_config, {}, {"OPENAI_API_KEY": "sk-openai-123456789", "ANTHROPIC_API_KEY": "sk-ant-12345"})
    for model in ("gpt-4o", "gpt-4o-mini", "o3-mini", "o1", "chatgpt-4o-latest", "text-embedding-3-small"):
        assert llm.route_key(model) == [["openai", model]], model
    for model in ("claude-sonnet-4-5", "claude-haiku-4-5"):
        assert llm.route_key(model) == [["anthropic", model]], model
    assert llm.route_key("bmad-default") == [["openai", "gpt-4o-mini"], ["anthropic", "claude-haiku-4-5"]]
    with pytest.raises(Exception) as caught:
        llm.route_key("llama-3.1-8b")
    assert caught.value.status == 404 and caught.value.code == "model_not_found"
    assert "llama-3.1-8b" in caught.value.message


def test_with_both_keys_set_no_request_goes_to_the_wrong_provider_first(start_app, client_for):
    with FakeUpstream("openai") as oa, FakeUpstream("anthropic") as an:
        environ = {"OPENAI_API_KEY": "sk-openai-123456789", "OPENAI_BASE_URL": oa.base_url,
                   "ANTHROPIC_API_KEY": "sk-ant-12345", "ANTHROPIC_BASE_URL": an.base_url}
        service = start_app(gateway_config(), environ=environ)
        service.app.llm.health.check_all()  # what the thread does at startup: OPENAI_BASE_URL lists its models
        client = client_for(service)
        assert served_by(client, "gpt-4o") == ["openai"] * 4
        assert served_by(client, "claude-haiku-4-5") == ["anthropic"] * 4
        assert [r.json["model"] for r in chats(oa)] == ["gpt-4o"] * 4
        assert [r.json["model"] for r in chats(an)] == ["claude-haiku-4-5"] * 4
        status = {p["name"]: p for p in client.get("/bmad/providers").json["providers"]}
        assert status["openai"]["success_rate"] == 1.0 and status["anthropic"]["success_rate"] == 1.0
        r = ask(client, "llama-3.1-8b")
        assert r.status == 404 and r.json["error"]["code"] == "model_not_found"
        assert "llama-3.1-8b" in r.json["error"]["message"]


# -- patterns, health-listed models, prefixes --------------------------------------------------


def test_models_entries_are_glob_patterns(start_app, client_for):
    with FakeUpstream("openai") as a, FakeUpstream("anthropic") as b:
        service = start_app(gateway_config(entry(a, "a", models=["gpt-4*", "o[0-9]*"]),
                                           entry(b, "b", models=["claude-*"])))
        client = client_for(service)
        assert served_by(client, "gpt-4o") == ["a"] * 4
        assert served_by(client, "o3-mini", 2) == ["a"] * 2
        assert served_by(client, "claude-opus-4-1") == ["b"] * 4
        assert ask(client, "gpt-5").status == 404  # gpt-4* does not match gpt-5
        ids = [m["id"] for m in client.get("/v1/models").json["data"]]
        assert not any("*" in i or "[" in i for i in ids)  # patterns are not models


def test_the_health_checked_models_list_filters_routing(start_app, client_for):
    with FakeUpstream("openai", models=["llama-3.1-8b"]) as a, FakeUpstream("openai", models=["qwen-2.5"]) as b:
        service = start_app(gateway_config(entry(a, "vllm"), entry(b, "ollama")))
        service.app.llm.health.check_all()
        client = client_for(service)
        assert served_by(client, "qwen-2.5") == ["ollama"] * 4
        assert served_by(client, "llama-3.1-8b") == ["vllm"] * 4
        r = ask(client, "gpt-4o")
        assert r.status == 404 and "gpt-4o" in r.json["error"]["message"]
        assert {"llama-3.1-8b", "qwen-2.5"} <= {m["id"] for m in client.get("/v1/models").json["data"]}
        assert service.app.llm.route_key("bmad-default") == [["vllm", "llama-3.1-8b"], ["ollama", "qwen-2.5"]]


def test_a_provider_type_prefix_routes_to_a_provider_of_that_type(start_app, client_for):
    with FakeUpstream("openai") as oa, FakeUpstream("anthropic") as an:
        service = start_app(gateway_config(entry(oa, "main"), entry(an, "claude")))
        client = client_for(service)
        r = ask(client, "openai/gpt-4o")
        assert r.status == 200 and (r.getheader("X-BMAD-Provider"), r.getheader("X-BMAD-Model")) == ("main", "gpt-4o")
        assert chats(oa)[-1].json["model"] == "gpt-4o"
        r = ask(client, "anthropic/claude-sonnet-4-5")
        assert r.status == 200 and r.getheader("X-BMAD-Provider") == "claude"
        assert chats(an)[-1].json["model"] == "claude-sonnet-4-5"
        r = ask(client, "main/gpt-4.1")  # the provider-name form still works
        assert r.getheader("X-BMAD-Provider") == "main" and chats(oa)[-1].json["model"] == "gpt-4.1"


def test_a_listed_name_with_a_type_like_prefix_is_not_stripped(start_app, client_for):
    with FakeUpstream("openai", models=["openai/gpt-oss-20b"]) as up:
        service = start_app(gateway_config(entry(up, "vllm")))
        service.app.llm.health.check_all()
        r = ask(client_for(service), "openai/gpt-oss-20b")
        assert r.status == 200 and chats(up)[-1].json["model"] == "openai/gpt-oss-20b"


def test_an_unknown_model_is_404_next_to_an_explicit_offline_provider(start_app, client_for):
    with FakeUpstream("openai") as up:
        service = start_app(gateway_config(entry(up, "a", models=["gpt-4o"]), {"type": "offline"}))
        client = client_for(service)
        r = ask(client, "made-up-model")
        assert r.status == 404 and r.json["error"]["code"] == "model_not_found"
        assert "made-up-model" in r.json["error"]["message"]
        assert ask(client, "offline").getheader("X-BMAD-Provider") == "offline"
    alone = start_app(gateway_config())
    r = ask(client_for(alone), "made-up-model")  # the offline provider alone still answers anything
    assert r.status == 200 and r.getheader("X-BMAD-Provider") == "offline"


# -- base_url ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_an_openai_base_url_works_with_or_without_v1(start_app, client_for, suffix):
    with FakeUpstream("openai") as up:
        service = start_app(gateway_config(entry(up, "a", base_url=up.origin + suffix)))
        assert ask(client_for(service), "gpt-4o-mini").status == 200
        service.app.llm.health.check_all()
        assert [r.path for r in up.requests] == ["/v1/chat/completions", "/v1/models"]


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_an_anthropic_base_url_works_with_or_without_v1(start_app, client_for, suffix):
    with FakeUpstream("anthropic") as up:
        service = start_app(gateway_config(entry(up, "c", base_url=up.origin + suffix)))
        assert ask(client_for(service), "claude-haiku-4-5").status == 200
        assert [r.path for r in up.requests] == ["/v1/messages"]


# -- GET /v1/models/{id} ----------------------------------------------------------------------


def test_every_listed_model_and_alias_can_be_retrieved(start_app, client_for):
    with FakeUpstream("openai", models=["gpt-4o-mini", "meta-llama/Llama-3.1-8B"]) as up:
        service = start_app(gateway_config(entry(up, "a"), models={"fast": ["a/gpt-4o-mini"],
                                                                   "team/smart": ["a/gpt-4o-mini"]}))
        service.app.llm.health.check_all()
        client = client_for(service)
        listed = client.get("/v1/models").json["data"]
        assert {"fast", "team/smart", "bmad-default", "gpt-4o-mini", "meta-llama/Llama-3.1-8B"} <= {m["id"] for m in listed}
        for model in listed:
            r = client.get(f"/v1/models/{model['id']}")
            assert r.status == 200, model
            assert r.json == model
        r = client.get("/v1/models/no-such-model")
        assert r.status == 404 and r.json["error"]["code"] == "model_not_found"
        assert "no-such-model" in r.json["error"]["message"]


def test_the_openai_sdk_retrieves_a_model(start_app):
    openai = pytest.importorskip("openai")
    unreachable = {"name": "x", "type": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["gpt-4o"]}
    service = start_app(gateway_config(unreachable, models={"fast": ["x/gpt-4o"]}))
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{service.port}/v1", api_key="anything", max_retries=0)
    ids = [model.id for model in client.models.list()]
    assert {"fast", "bmad-default", "gpt-4o"} <= set(ids)
    for model_id in ids:
        assert client.models.retrieve(model_id).id == model_id
    assert client.models.retrieve("gpt-4o").owned_by == "x"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-3-nobody-serves")


# -- request ids --------------------------------------------------------------------------------


def test_the_request_id_goes_upstream_and_the_upstream_id_is_recorded(start_app, client_for):
    with FakeUpstream("openai") as a, FakeUpstream("anthropic") as b:
        a.request_id, b.request_id = "req_openai_1", "req_anthropic_1"
        events = EventLog()
        service = start_app(gateway_config(entry(a, "a", models=["gpt-4o-mini"]),
                                           entry(b, "b", models=["claude-haiku-4-5"])), events=events)
        client = client_for(service)
        r = client.post("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES},
                        headers={"X-Request-ID": "trace-abc.1"})
        assert r.status == 200 and r.getheader("X-Request-ID") == "trace-abc.1"
        assert chats(a)[-1].headers["x-request-id"] == "trace-abc.1"
        r = client.post("/v1/chat/completions", {"model": "claude-haiku-4-5", "messages": MESSAGES, "stream": True},
                        headers={"X-Request-ID": "trace-abc.2"})
        assert r.status == 200 and b"[DONE]" in r.body
        assert chats(b)[-1].headers["x-request-id"] == "trace-abc.2"
        attempts = events.of("provider_request")
        assert [(e["request_id"], e["upstream_request_id"]) for e in attempts] == [
            ("trace-abc.1", "req_openai_1"), ("trace-abc.2", "req_anthropic_1")]
        a.fault("status", times=1, status=500)
        r = client.post("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES},
                        headers={"X-Request-ID": "trace-abc.3"})
        assert r.status == 502
        [failure] = events.of("provider_failure")
        assert (failure["request_id"], failure["upstream_request_id"]) == ("trace-abc.3", "req_openai_1")
        [line] = [x for x in service.app.logger.records() if x["msg"] == "provider attempt failed"]
        assert (line["request_id"], line["upstream_request_id"]) == ("trace-abc.3", "req_openai_1")
        ok = [x for x in service.app.logger.records() if x["msg"] == "provider attempt succeeded"]
        assert [x["upstream_request_id"] for x in ok] == ["req_openai_1", "req_anthropic_1"]


def test_a_generated_request_id_is_forwarded_too(start_app, client_for):
    with FakeUpstream("openai") as a:
        service = start_app(gateway_config(entry(a, "a")), clock=FakeClock())
        r = ask(client_for(service), "gpt-4o-mini")
        assert chats(a)[-1].headers["x-request-id"] == r.getheader("X-Request-ID")


def test_an_ollama_latest_tag_is_served_by_its_short_name(start_app, client_for):
    with FakeUpstream("openai", models=["llama3.1:latest", "qwen2.5:7b"]) as up:
        service = start_app(gateway_config(entry(up, "ollama")))
        service.app.llm.health.check_all()
        client = client_for(service)
        assert ask(client, "llama3.1").status == 200
        assert ask(client, "qwen2.5:7b").status == 200
        assert ask(client, "qwen2.5").status == 404  # only :latest has a short name
