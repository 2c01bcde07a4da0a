"""The one pipeline around every LLM call: its plugin contract, and what it gives every entry point."""

import json

import pytest

from bmad.errors import TooManyRequests
from bmad.gateway.pipeline import Call, Pipeline
from bmad.providers.base import ChatRequest
from tests.fakes.upstream import FakeUpstream
from tests.support import CapturedLogger
from tests.workflow_support import reply_for, start_run, start_with_upstreams, wait_run, write_catalog


class Recording:
    """A plugin that notes its hooks in a shared list, and may answer or refuse."""

    def __init__(self, name, trail, answer=None, refuse=False, fail_post=False):
        self.name, self.trail, self.answer, self.refuse, self.fail_post = name, trail, answer, refuse, fail_post

    def pre(self, call):
        self.trail.append(("pre", self.name))
        if self.refuse:
            raise TooManyRequests(f"{self.name} refused")
        return self.answer

    def post(self, call, result, error):
        self.trail.append(("post", self.name, result, type(error).__name__ if error else None))
        if self.fail_post:
            raise RuntimeError("a broken post-hook")


def _call():
    return Call(ChatRequest("m", [{"role": "user", "content": "hi"}]), user="u")


def test_post_hooks_run_in_reverse_order_around_the_router():
    trail = []
    pipeline = Pipeline([Recording("a", trail), Recording("b", trail)], lambda call: "routed", CapturedLogger())
    assert pipeline.run(_call()) == "routed"
    assert trail == [("pre", "a"), ("pre", "b"), ("post", "b", "routed", None), ("post", "a", "routed", None)]


def test_a_pre_hook_answer_skips_the_rest_and_the_router():
    trail, routed = [], []
    pipeline = Pipeline([Recording("a", trail), Recording("hit", trail, answer="cached"), Recording("c", trail)],
                        lambda call: routed.append(call), CapturedLogger())
    assert pipeline.run(_call()) == "cached"
    assert routed == []
    assert trail == [("pre", "a"), ("pre", "hit"), ("post", "hit", "cached", None), ("post", "a", "cached", None)]


def test_a_refusing_pre_hook_is_not_posted_but_the_earlier_ones_see_the_error():
    trail = []
    pipeline = Pipeline([Recording("a", trail), Recording("limit", trail, refuse=True), Recording("c", trail)],
                        lambda call: "routed", CapturedLogger())
    with pytest.raises(TooManyRequests):
        pipeline.run(_call())
    assert trail == [("pre", "a"), ("pre", "limit"), ("post", "a", None, "TooManyRequests")]


def test_a_failing_post_hook_is_logged_and_the_caller_still_gets_the_answer():
    trail = []
    logger = CapturedLogger()
    pipeline = Pipeline([Recording("a", trail), Recording("broken", trail, fail_post=True)], lambda call: "routed",
                        logger)
    assert pipeline.run(_call()) == "routed"
    assert ("post", "a", "routed", None) in trail
    assert any(r["msg"] == "pipeline post-hook failed" and r["plugin"] == "broken" for r in logger.records())


def test_the_composition_root_states_the_order(start_app):
    service = start_app()
    assert service.app.completions.pipeline.names() == ["rate_limit", "cache", "dedup", "tool_runs"]


def test_a_json_answer_to_a_stream_request_keeps_its_tool_calls(start_app, client_for):
    """Some OpenAI-compatible servers answer ``stream: true`` with one JSON body; nothing of it may be lost."""
    completion = {"id": "chatcmpl-json", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                  "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                      "role": "assistant", "content": None, "tool_calls": [
                          {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}},
                          {"id": "call_2", "type": "function", "function": {"name": "other", "arguments": "{}"}}]}},
                              {"index": 1, "finish_reason": "stop", "message": {"role": "assistant",
                                                                               "content": "second choice"}}],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
    with FakeUpstream("openai") as up:
        up.fault("malformed", body=json.dumps(completion))
        service = start_app({"providers": [{"name": "up", "type": "openai", "base_url": up.base_url,
                                            "api_key": "sk-test", "models": ["gpt-4o-mini"]}]})
        resp = client_for(service).post("/v1/chat/completions", {
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "call tools"}], "stream": True})
    assert resp.status == 200
    events = [json.loads(line[6:]) for line in resp.body.decode().split("\n\n")
              if line.startswith("data: {")]
    calls = [c for e in events for ch in e["choices"] for c in ch["delta"].get("tool_calls") or ()]
    assert [(c["index"], c["id"], c["function"]["name"]) for c in calls] == [(0, "call_1", "lookup"),
                                                                             (1, "call_2", "other")]
    assert "".join(ch["delta"].get("content") or "" for e in events for ch in e["choices"]
                   if ch["index"] == 1) == "second choice"
    assert resp.body.endswith(b"data: [DONE]\n\n")


@pytest.fixture
def one_step(tmp_path, start_app):
    """A service on a one-step catalog whose step goes to a fake upstream, and that upstream."""
    with FakeUpstream("openai", reply=reply_for) as up:
        catalog = write_catalog(tmp_path / "catalog", "single", steps=[("a", [])])
        yield start_with_upstreams(start_app, [up], {"catalog_dir": catalog}), up


def _chat_calls(up):
    return sum(r.route == "chat" for r in up.requests)


def test_a_repeated_identical_run_is_served_from_the_cache(one_step, client_for):
    service, up = one_step
    client = client_for(service, {"X-User-ID": "alice"})
    first = wait_run(client, start_run(client, "single"))
    second = wait_run(client, start_run(client, "single"))
    assert first["state"] == second["state"] == "succeeded"
    assert _chat_calls(up) == 1
    # The step was charged to the user who started the run, in the provider-class bucket.
    assert service.app.limiter.acquire("alice", "provider").remaining == 5 - 3
    fresh = wait_run(client, start_run(client, "single", cache="no-cache"))
    assert fresh["state"] == "succeeded" and _chat_calls(up) == 2
    stored_nothing = wait_run(client, start_run(client, "single", cache="no-store"))
    assert stored_nothing["state"] == "succeeded" and _chat_calls(up) == 3


def test_a_bad_run_cache_mode_is_a_400(one_step, client_for):
    service, _ = one_step
    resp = client_for(service).post("/bmad/workflows/single/runs", {"inputs": {"idea": "x"}, "cache": "always"})
    assert resp.status == 400 and resp.json["error"]["type"] == "invalid_request" and "'cache'" in resp.json["error"]["message"]


def test_open_routes_see_an_anonymous_user_not_an_admin_when_keys_are_configured(start_app):
    service = start_app({"auth": {"api_keys": [{"key": "k-123456", "user": "root", "role": "admin"}]}})

    class Req:
        headers = {}
    principal = service.app._optional_principal(Req())
    assert (principal.user, principal.role, principal.is_admin) == ("anonymous", "user", False)
