"""POST /bmad/tools/{tool_id}/run: messages from the catalog, routed, answered with usage and cost."""

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.llm_support import UPSTREAM_KEY, assert_no_secret, entry, gateway_config, EventLog

IDEA = "A marketplace where neighbours lend each other garden tools."


def run(client, tool, body):
    return client.post(f"/bmad/tools/{tool}/run", body)


def test_offline_run_on_a_fresh_machine(start_app, client_for):
    service = start_app(gateway_config(providers=[]))
    r = run(client_for(service), "analyst", {"input": IDEA})
    assert r.status == 200
    body = r.json
    assert set(body) == {"status", "tool", "output", "provider", "model", "usage", "cost_usd", "latency_ms"}
    assert (body["status"], body["tool"], body["provider"], body["model"]) == ("success", "analyst", "offline",
                                                                               "offline")
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert body["cost_usd"] == 0
    output = body["output"]
    assert "no language model was called" in output.lower()
    assert "Curious analyst and strategic thinking partner" in output  # the tool's role
    assert "garden tools" in output  # the input
    assert output.rstrip().endswith("```")  # the closing status block the workflow engine parses
    again = run(client_for(service), "analyst", {"input": IDEA}).json["output"]
    assert again == output  # deterministic
    assert r.getheader("X-BMAD-Provider") == "offline"


def test_run_through_an_upstream_sends_the_tool_messages(start_app, client_for):
    with FakeUpstream("openai", api_key=UPSTREAM_KEY, usage=(120, 40), reply="## Executive Summary\nGreat.") as up:
        events = EventLog()
        service = start_app(gateway_config(entry(up, "oa", models=["gpt-4o-mini"])), events=events)
        client = client_for(service, {"X-User-ID": "carol"})
        r = run(client, "analyst", {"input": {"idea": IDEA, "audience": "urban renters"},
                                    "context": {"brainstorming-notes": "lending libraries"}})
        assert r.status == 200, r.json
        body = r.json
        assert body["output"] == "## Executive Summary\nGreat."
        assert (body["provider"], body["model"]) == ("oa", "gpt-4o-mini")
        assert body["usage"] == {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160}
        assert body["cost_usd"] == pytest.approx((120 * 0.15 + 40 * 0.60) / 1e6)
        assert body["latency_ms"] > 0
        sent = up.requests[-1].json
        tool = service.app.catalog.tool("analyst")
        assert sent["model"] == "gpt-4o-mini"
        assert sent["messages"][0] == {"role": "system", "content": tool["instructions"]}
        user = sent["messages"][1]["content"]
        assert IDEA in user and "urban renters" in user and "lending libraries" in user
        [event] = events.of("tool_execution")
        assert (event["tool"], event["user_id"], event["status"], event["tokens"]) == ("analyst", "carol", "success",
                                                                                       160)
        assert event["cost_usd"] == body["cost_usd"]
        metrics = client.get("/bmad/metrics").body.decode()
        assert 'bmad_tool_executions_total{status="success",tool="analyst"} 1.0' in metrics
        assert_no_secret(service, r.body)


def test_model_choice_request_then_config_then_default(start_app, client_for):
    with FakeUpstream("openai") as up:
        service = start_app(gateway_config(entry(up, "oa"), tools={"architect": {"model": "gpt-4.1"}}))
        client = client_for(service)
        assert run(client, "architect", {"input": "a todo app"}).json["model"] == "gpt-4.1"
        assert run(client, "architect", {"input": "a todo app", "model": "gpt-4o"}).json["model"] == "gpt-4o"
        assert run(client, "pm", {"input": "a todo app"}).json["model"] == "gpt-4o-mini"


def test_missing_required_input_names_it(start_app, client_for):
    service = start_app(gateway_config(providers=[]))
    r = run(client_for(service), "analyst", {"input": {"audience": "everyone"}})
    assert r.status == 400
    assert "idea" in r.json["error"]["message"]


@pytest.mark.parametrize("body, fragment", [
    ({"input": 5}, "input"),
    ({"input": "x", "context": "notes"}, "context"),
    ({"input": "x", "extra": 1}, "extra"),
    ({"input": "x", "model": ""}, "model"),
    ({"input": "x", "stream": True}, "stream"),
])
def test_bad_run_bodies_are_400(start_app, client_for, body, fragment):
    service = start_app(gateway_config(providers=[]))
    r = run(client_for(service), "analyst", body)
    assert r.status == 400 and fragment in r.json["error"]["message"]


def test_unknown_tool_and_unknown_model(start_app, client_for):
    with FakeUpstream("openai") as up:
        service = start_app(gateway_config(entry(up, "oa", models=["gpt-4o-mini"])))
        client = client_for(service)
        r = run(client, "wizard", {"input": "x"})
        assert r.status == 404 and r.json["error"]["type"] == "tool_not_found"
        r = run(client, "analyst", {"input": "x", "model": "gpt-99"})
        assert r.status == 404 and r.json["error"]["type"] == "invalid_request_error"


def test_a_failed_run_is_counted(start_app, client_for):
    with FakeUpstream("openai") as up:
        events = EventLog()
        service = start_app(gateway_config(entry(up, "oa")), events=events)
        up.fault("status", times=1, status=500)
        client = client_for(service)
        r = run(client, "qa", {"input": "the login story"})
        assert r.status == 502
        assert r.json["status"] == "error" and r.json["error"]["type"] == "all_providers_failed"
        [event] = events.of("tool_execution")
        assert event["status"] == "error" and event["tool"] == "qa"
        assert 'bmad_tool_executions_total{status="error",tool="qa"} 1.0' in client.get("/bmad/metrics").body.decode()


def test_run_route_policies(start_app):
    service = start_app(gateway_config(providers=[]))
    route, _ = service.app.router.match("POST", "/bmad/tools/analyst/run")
    assert (route.auth, route.rate_class, route.record) == ("user", "provider", True)
    route, _ = service.app.router.match("POST", "/v1/chat/completions")
    assert (route.auth, route.rate_class) == ("user", "provider")


