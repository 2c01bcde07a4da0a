"""The Anthropic client: OpenAI -> Anthropic requests, Anthropic -> OpenAI answers and streams."""

import json

import pytest

from bmad.providers.anthropic import from_anthropic, to_anthropic
from bmad.providers.base import UNSUPPORTED, ChatRequest, ProviderError
from tests.fakes.upstream import FakeUpstream
from tests.llm_support import UPSTREAM_KEY, assert_no_secret, entry, gateway_config

openai = pytest.importorskip("openai")


def chat(messages, **params):
    return ChatRequest("m", messages, params)


def test_system_messages_move_to_the_top_level_and_max_tokens_defaults():
    body = to_anthropic(chat([{"role": "system", "content": "Be brief."},
                              {"role": "developer", "content": "Use markdown."},
                              {"role": "user", "content": "Hi"}]), "claude-haiku-4-5")
    assert body == {"model": "claude-haiku-4-5", "max_tokens": 1024, "system": "Be brief.\n\nUse markdown.",
                    "messages": [{"role": "user", "content": "Hi"}]}


def test_parameters_are_translated():
    body = to_anthropic(chat([{"role": "user", "content": "Hi"}], max_tokens=50, temperature=1.7, top_p=0.9,
                             stop="END", user="alice", presence_penalty=0.5, seed=3), "m", stream=True)
    assert body["max_tokens"] == 50
    assert body["temperature"] == 1.0  # Anthropic's range ends at 1
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "alice"}
    assert body["stream"] is True
    assert "presence_penalty" not in body and "seed" not in body
    assert to_anthropic(chat([{"role": "user", "content": "x"}], max_completion_tokens=7, max_tokens=9),
                        "m")["max_tokens"] == 7


def test_consecutive_messages_of_one_role_are_merged_and_parts_flattened():
    body = to_anthropic(chat([{"role": "user", "content": "one"},
                              {"role": "user", "content": [{"type": "text", "text": "two"}]},
                              {"role": "assistant", "content": "three"},
                              {"role": "user", "content": "four"}]), "m")
    assert body["messages"] == [{"role": "user", "content": "one\n\ntwo"},
                                {"role": "assistant", "content": "three"},
                                {"role": "user", "content": "four"}]


def test_images_become_content_blocks():
    body = to_anthropic(chat([{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]), "m")
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]


@pytest.mark.parametrize("params, messages", [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, None),
    ({"n": 2}, None),
    ({}, [{"role": "tool", "content": "x", "tool_call_id": "1"}]),
    ({}, [{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}]),
])
def test_untranslatable_requests_step_aside(params, messages):
    with pytest.raises(ProviderError) as caught:
        to_anthropic(chat(messages or [{"role": "user", "content": "x"}], **params), "m")
    assert caught.value.kind == UNSUPPORTED and caught.value.retryable


def test_answer_translation():
    reply = from_anthropic({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5-20251001",
        "content": [{"type": "text", "text": "Hello "}, {"type": "tool_use", "id": "t"}, {"type": "text", "text": "there"}],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 5,
                  "cache_creation_input_tokens": 1}}, 1700000000)
    assert reply.body == {
        "id": "chatcmpl-msg_1", "object": "chat.completion", "created": 1700000000,
        "model": "claude-haiku-4-5-20251001",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there", "refusal": None},
                     "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 16, "completion_tokens": 4, "total_tokens": 20}}
    assert (reply.prompt_tokens, reply.completion_tokens) == (16, 4)


@pytest.mark.parametrize("stop_reason, finish", [("end_turn", "stop"), ("stop_sequence", "stop"),
                                                 ("max_tokens", "length"), ("refusal", "content_filter")])
def test_stop_reasons(stop_reason, finish):
    reply = from_anthropic({"type": "message", "content": [], "stop_reason": stop_reason, "usage": {}}, 0)
    assert reply.body["choices"][0]["finish_reason"] == finish


def test_not_a_message_is_an_invalid_answer():
    with pytest.raises(ProviderError) as caught:
        from_anthropic({"type": "error"}, 0)
    assert caught.value.kind == "invalid_response"


@pytest.fixture
def claude():
    with FakeUpstream("anthropic", api_key=UPSTREAM_KEY, usage=(21, 9)) as up:
        yield up


def test_through_the_gateway_with_the_openai_sdk(start_app, claude):
    service = start_app(gateway_config(entry(claude, "claude")))
    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=64, stop=["\n\n"],
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello Claude"}])
    completion = r.parse()
    assert completion.choices[0].message.content == "fake-anthropic reply to: Hello Claude"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 21 and completion.usage.completion_tokens == 9
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-msg_")
    assert r.headers["X-BMAD-Provider"] == "claude"
    sent = claude.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == UPSTREAM_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.json == {"model": "claude-haiku-4-5", "max_tokens": 64, "system": "Be brief.",
                         "stop_sequences": ["\n\n"], "messages": [{"role": "user", "content": "Hello Claude"}]}
    assert_no_secret(service, r.http_response.text)


def test_stream_translation_exact_events(start_app, client_for, claude):
    claude.reply = "abcdef"
    service = start_app(gateway_config(entry(claude, "claude")), clock=lambda: 1700000000.0)
    client = client_for(service)
    r = client.post("/v1/chat/completions", {"model": "claude-haiku-4-5", "stream": True,
                                             "stream_options": {"include_usage": True},
                                             "messages": [{"role": "user", "content": "x"}]})
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")
    events = [block[6:] for block in r.body.decode().split("\n\n") if block]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    msg_id = chunks[0]["id"]
    assert msg_id.startswith("chatcmpl-msg_")

    def chunk(delta, finish=None):
        return {"id": msg_id, "object": "chat.completion.chunk", "created": 1700000000, "model": "claude-haiku-4-5",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    assert chunks == [chunk({"role": "assistant", "content": ""}), chunk({"content": "ab"}), chunk({"content": "cd"}),
                      chunk({"content": "ef"}), chunk({}, "stop"),
                      {"id": msg_id, "object": "chat.completion.chunk", "created": 1700000000,
                       "model": "claude-haiku-4-5", "choices": [],
                       "usage": {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}}]
    assert claude.requests[-1].json["stream"] is True


def test_streamed_usage_is_counted_and_priced(start_app, client_for, claude):
    service = start_app(gateway_config(entry(claude, "claude", models=["claude-haiku-4-5"])))
    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0)
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="claude-haiku-4-5", stream=True, messages=[{"role": "user", "content": "stream please"}]) if c.choices)
    assert text == "fake-anthropic reply to: stream please"
    status = client_for(service).get("/bmad/providers").json["providers"][0]
    assert status["prompt_tokens"] == 21 and status["completion_tokens"] == 9
    assert status["cost_usd"] == pytest.approx((21 * 1.0 + 9 * 5.0) / 1e6)


def test_anthropic_errors_pass_through_in_the_openai_shape(start_app, client_for, claude):
    service = start_app(gateway_config(entry(claude, "claude")))
    claude.fault("status", times=1, status=400, message="messages: roles must alternate")
    r = client_for(service).post("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert r.status == 400
    assert r.json["error"]["type"] == "invalid_request_error"
    assert "roles must alternate" in r.json["error"]["message"]
    assert "claude" in r.json["error"]["message"]


def test_overloaded_529_is_retryable(start_app, client_for, claude):
    with FakeUpstream("openai") as backup:
        service = start_app(gateway_config(entry(claude, "claude"), entry(backup, "backup"),
                                           routing={"strategy": "priority"}))
        claude.fault("status", times=1, status=529)
        r = client_for(service).post("/v1/chat/completions", {"model": "m",
                                                              "messages": [{"role": "user", "content": "x"}]})
        assert r.status == 200 and r.getheader("X-BMAD-Provider") == "backup"
        assert r.getheader("X-BMAD-Attempts") == "2"
