"""The built-in offline provider."""

from bmad.providers.base import ChatRequest
from bmad.providers.offline import OfflineProvider, offline_text
from bmad.providers.settings import ProviderSpec


def provider():
    return OfflineProvider(ProviderSpec("offline", "offline"), None, clock=lambda: 1700000000.0)


def test_deterministic_and_clearly_marked():
    chat = ChatRequest("bmad-default", [{"role": "system", "content": "You are the PM."},
                                        {"role": "user", "content": "Plan a bakery app."}],
                       tool={"id": "pm", "name": "Product Manager", "role": "Investigative product strategist",
                             "description": "Turns a brief into a PRD.", "produces": "prd"})
    text = offline_text(chat)
    assert text == offline_text(chat)
    assert "no language model was called" in text.lower()
    assert "Product Manager: Investigative product strategist" in text
    assert "Plan a bakery app." in text and "`prd`" in text
    reply = provider().complete(chat, "whatever")
    assert reply.body["model"] == "offline" and reply.body["choices"][0]["message"]["content"] == text
    assert reply.body["id"] == provider().complete(chat, "x").body["id"]
    assert (reply.prompt_tokens, reply.completion_tokens) == (0, 0)


def test_long_input_is_excerpted_and_chat_without_tool_works():
    text = offline_text(ChatRequest("m", [{"role": "user", "content": "word " * 1000}]))
    assert "General assistant" in text and "[...]" in text and len(text) < 3000


def test_streams_chunks_ending_in_done():
    stream = provider().stream(ChatRequest("m", [{"role": "user", "content": "hi"}], include_usage=True), "m")
    stream.prime()
    events = list(stream)
    assert events[-1] == b"data: [DONE]\n\n"
    assert b'"usage":{"prompt_tokens":0' in events[-2]
    assert b'"finish_reason":"stop"' in events[-3]
    assert stream.finished
