"""The OpenAI client: wire format, pass-through streaming, OpenAI-compatible servers."""

import json

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.llm_support import UPSTREAM_KEY, entry, gateway_config

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def up():
    with FakeUpstream("openai", api_key=UPSTREAM_KEY) as server:
        yield server


def test_request_on_the_wire(start_app, client_for, up):
    service = start_app(gateway_config(entry(up, "oa")))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    r = client_for(service).post("/v1/chat/completions", {
        "model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.3, "max_tokens": 20, "seed": 7,
        "tools": tools, "response_format": {"type": "json_object"}, "user": "u1"})
    assert r.status == 200
    sent = up.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["user-agent"].startswith("bmad-api/")
    assert sent.json == {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.3, "max_tokens": 20,
                         "seed": 7, "tools": tools, "response_format": {"type": "json_object"}, "user": "u1"}


def test_answer_passes_through_unchanged(start_app, client_for, up):
    service = start_app(gateway_config(entry(up, "oa")))
    body = client_for(service).post("/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES}).json
    assert body["object"] == "chat.completion" and body["system_fingerprint"] == "fp_fake"
    assert body["id"].startswith("chatcmpl-") and body["model"] == "gpt-4o"
    assert body["choices"][0]["message"]["refusal"] is None


def test_stream_events_pass_through_byte_for_byte(start_app, client_for, up):
    service = start_app(gateway_config(entry(up, "oa")))
    r = client_for(service).post("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES,
                                                          "stream": True, "stream_options": {"include_usage": True}})
    events = [e for e in r.body.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * len(chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 18
    assert up.requests[-1].json["stream"] is True
    assert up.requests[-1].headers["accept"] == "text/event-stream"


def test_a_compatible_server_at_another_path_and_without_a_key(start_app, client_for):
    with FakeUpstream("openai") as local:
        service = start_app(gateway_config({"name": "ollama", "type": "openai", "base_url": local.origin + "/v1/",
                                            "models": ["llama3"]}))
        r = client_for(service).post("/v1/chat/completions", {"model": "llama3", "messages": MESSAGES})
        assert r.status == 200
        assert "authorization" not in local.requests[-1].headers
        assert local.requests[-1].path == "/v1/chat/completions"


def test_a_json_answer_to_a_stream_request_is_replayed_as_events(start_app, client_for):
    with FakeUpstream("openai") as a:
        service = start_app(gateway_config(entry(a, "a")))
        a.fault("huge", times=1, size=2000)  # a plain JSON body, even though a stream was asked for
        r = client_for(service).post("/v1/chat/completions", {"model": "m", "messages": MESSAGES, "stream": True})
        events = [e for e in r.body.split(b"\n\n") if e]
        assert events[-1] == b"data: [DONE]"
        assert json.loads(events[0][6:])["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert len(json.loads(events[1][6:])["choices"][0]["delta"]["content"]) > 1000


def test_an_error_event_mid_stream_ends_the_stream(start_app, client_for):
    with FakeUpstream("openai") as a:
        service = start_app(gateway_config(entry(a, "a")))
        original = a._stream_events

        def with_error(rec, params, text):
            events = original(rec, params, text)
            return events[:2] + [b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n']
        a._stream_events = with_error
        r = client_for(service).post("/v1/chat/completions", {"model": "m", "messages": MESSAGES, "stream": True})
        last = [e for e in r.body.split(b"\n\n") if e][-1]
        assert json.loads(last[6:])["error"]["message"] == "the upstream failed mid-stream: overloaded"
