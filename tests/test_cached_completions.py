"""The response cache and de-duplication in front of the provider router, over real sockets."""

import json
import threading

import pytest

from bmad.gateway.caching import cache_mode
from bmad.providers.sse import replay as sse_events
from tests.fakes.upstream import FakeUpstream
from tests.llm_support import UPSTREAM_KEY, entry, gateway_config
from tests.support import FakeClock, eventually

MESSAGES = [{"role": "user", "content": "Say hello to the cache"}]
BODY = {"model": "gpt-4o-mini", "messages": MESSAGES}
KEYS = {"api_keys": [{"key": "alice-key", "user": "alice"}, {"key": "bob-key", "user": "bob"}]}
CACHE_ON = {"cache": {"enabled": True}}


@pytest.fixture
def upstream():
    with FakeUpstream("openai", api_key=UPSTREAM_KEY, usage=(13, 5)) as up:
        yield up


def chats(up):
    return [r for r in up.requests if r.route == "chat"]


def config(up, **sections):
    return gateway_config(entry(up, "up"), **{**CACHE_ON, **sections})


def test_miss_hit_no_store_and_no_cache(start_app, client_for, upstream):
    clock = FakeClock()
    service = start_app(config(upstream), clock=clock)
    client = client_for(service)
    first = client.post("/v1/chat/completions", BODY)
    assert first.status == 200 and first.getheader("X-Cache") == "MISS" and first.getheader("Age") is None
    clock.tick(7.5)
    hit = client.post("/v1/chat/completions", BODY)
    assert hit.status == 200 and hit.getheader("X-Cache") == "HIT"
    assert hit.getheader("Age") == "7"
    assert hit.getheader("X-BMAD-Provider") == "up" and hit.getheader("X-BMAD-Attempts") == "0"
    assert hit.body == first.body
    assert len(chats(upstream)) == 1

    bypass = client.post("/v1/chat/completions", BODY, headers={"Cache-Control": "no-store"})
    assert bypass.status == 200 and bypass.getheader("X-Cache") == "BYPASS"
    assert len(chats(upstream)) == 2

    upstream.reply = "a fresher answer"
    refresh = client.post("/v1/chat/completions", BODY, headers={"Cache-Control": "no-cache"})
    assert refresh.getheader("X-Cache") == "MISS" and len(chats(upstream)) == 3
    again = client.post("/v1/chat/completions", BODY)
    assert again.getheader("X-Cache") == "HIT" and again.getheader("Age") == "0"
    assert again.json["choices"][0]["message"]["content"] == "a fresher answer"
    assert len(chats(upstream)) == 3

    stats = client.get("/bmad/performance").json["stats"]["cache"]
    assert (stats["hits"], stats["misses"], stats["entries"]) == (2, 1, 1)


def test_stream_flag_and_user_are_not_part_of_the_key_but_params_are(start_app, client_for, upstream):
    service = start_app(config(upstream))
    client = client_for(service)
    client.post("/v1/chat/completions", BODY)
    assert client.post("/v1/chat/completions", {**BODY, "stream": False, "user": "x"}).getheader("X-Cache") == "HIT"
    assert client.post("/v1/chat/completions", {**BODY, "temperature": 0.1}).getheader("X-Cache") == "MISS"


def test_entries_expire(start_app, client_for, upstream):
    clock = FakeClock()
    service = start_app(config(upstream, cache={"enabled": True, "ttl_seconds": 60.0}), clock=clock)
    client = client_for(service)
    client.post("/v1/chat/completions", BODY)
    clock.tick(60)
    assert client.post("/v1/chat/completions", BODY).getheader("X-Cache") == "MISS"
    assert len(chats(upstream)) == 2


def test_errors_are_never_cached(start_app, client_for, upstream):
    service = start_app(config(upstream))
    client = client_for(service)
    upstream.fault("status", times=1, status=400, message="bad things")
    bad = client.post("/v1/chat/completions", BODY)
    assert bad.status == 400 and bad.getheader("X-Cache") == "MISS"
    assert "error" in bad.json
    good = client.post("/v1/chat/completions", BODY)
    assert good.status == 200 and good.getheader("X-Cache") == "MISS"
    assert client.post("/v1/chat/completions", BODY).getheader("X-Cache") == "HIT"
    assert len(chats(upstream)) == 2


def test_a_cached_answer_is_replayed_as_sse_that_the_openai_sdk_reads(start_app, client_for, upstream):
    openai = pytest.importorskip("openai")
    service = start_app(config(upstream))
    stored = client_for(service).post("/v1/chat/completions", BODY).json
    sdk = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0, timeout=10)
    with sdk.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}) as raw:
        assert raw.headers["X-Cache"] == "HIT"
        assert raw.headers["Content-Type"].startswith("text/event-stream")
        assert raw.headers["Transfer-Encoding"] == "chunked"
        chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == stored["choices"][0]["message"]["content"] == "fake-openai reply to: Say hello to the cache"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 13
    assert all(c.id == stored["id"] for c in chunks)
    without_usage = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert all(c.usage is None for c in without_usage) and all(c.choices for c in without_usage)
    assert len(chats(upstream)) == 1


def test_a_streamed_miss_is_passed_through_and_not_stored(start_app, client_for, upstream):
    service = start_app(config(upstream))
    client = client_for(service)
    streamed = client.post("/v1/chat/completions", {**BODY, "stream": True})
    assert streamed.status == 200 and streamed.getheader("X-Cache") == "MISS"
    assert streamed.body.endswith(b"data: [DONE]\n\n")
    assert client.post("/v1/chat/completions", BODY).getheader("X-Cache") == "MISS"
    assert len(chats(upstream)) == 2


def test_the_exact_replayed_bytes():
    completion = {"id": "c1", "object": "chat.completion", "created": 5, "model": "m",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
    head = '{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","usage":null,"choices":[{"index":0,'
    assert b"".join(sse_events(completion, include_usage=True)).decode() == (
        f'data: {head}"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}]}}\n\n'
        f'data: {head}"delta":{{"content":"hi"}},"logprobs":null,"finish_reason":null}}]}}\n\n'
        f'data: {head}"delta":{{}},"logprobs":null,"finish_reason":"stop"}}]}}\n\n'
        'data: {"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","usage":'
        '{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3},"choices":[]}\n\n'
        "data: [DONE]\n\n")


def test_tool_calls_are_replayed():
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    completion = {"id": "c", "created": 1, "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [call]},
         "finish_reason": "tool_calls"}]}
    events = [json.loads(e[6:]) for e in sse_events(completion) if e != b"data: [DONE]\n\n"]
    assert events[1]["choices"][0]["delta"] == {"tool_calls": [{"index": 0, **call}]}
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tenants_are_scoped(start_app, client_for, upstream):
    service = start_app(config(upstream, auth=KEYS))
    alice = client_for(service, {"Authorization": "Bearer alice-key"})
    bob = client_for(service, {"Authorization": "Bearer bob-key"})
    assert alice.post("/v1/chat/completions", BODY).getheader("X-Cache") == "MISS"
    assert alice.post("/v1/chat/completions", BODY).getheader("X-Cache") == "HIT"
    assert bob.post("/v1/chat/completions", BODY).getheader("X-Cache") == "MISS"
    assert len(chats(upstream)) == 2


def test_a_shared_cache_serves_every_tenant(start_app, client_for, upstream):
    service = start_app(config(upstream, auth=KEYS, cache={"enabled": True, "shared": True}))
    alice = client_for(service, {"Authorization": "Bearer alice-key"})
    bob = client_for(service, {"Authorization": "Bearer bob-key"})
    alice.post("/v1/chat/completions", BODY)
    assert bob.post("/v1/chat/completions", BODY).getheader("X-Cache") == "HIT"
    assert len(chats(upstream)) == 1


def test_ten_concurrent_identical_requests_reach_the_upstream_once(start_app, client_for, upstream):
    service = start_app(config(upstream))
    entered, release = threading.Event(), threading.Event()

    def gated_reply(request):
        entered.set()
        release.wait(10)
        return "one answer for all"

    upstream.reply = gated_reply
    responses = [None] * 10

    def call(i):
        responses[i] = client_for(service).post("/v1/chat/completions", BODY)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    assert entered.wait(10)
    eventually(lambda: service.app.dedup.stats()["waiting"] == 9)
    release.set()
    for t in threads:
        t.join(10)
    assert len(chats(upstream)) == 1
    assert all(r.status == 200 for r in responses)
    assert len({r.body for r in responses}) == 1
    assert sorted(r.getheader("X-Dedup") or "" for r in responses) == [""] + ["coalesced"] * 9
    assert all(r.getheader("X-Cache") == "MISS" for r in responses)
    assert service.app.dedup.stats()["coalesced"] == 9
    text = client_for(service).get("/bmad/metrics").body.decode()
    assert "bmad_dedup_coalesced_total 9.0\n" in text


def test_a_failing_leader_fails_every_coalesced_request(start_app, client_for, upstream):
    service = start_app(config(upstream))
    entered, release = threading.Event(), threading.Event()

    def gated_failure(request):
        entered.set()
        release.wait(10)
        raise RuntimeError("the fake upstream breaks")

    upstream.reply = gated_failure
    responses = [None] * 4

    def call(i):
        responses[i] = client_for(service).post("/v1/chat/completions", BODY)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    assert entered.wait(10)
    eventually(lambda: service.app.dedup.stats()["waiting"] == 3)
    release.set()
    for t in threads:
        t.join(10)
    statuses = {r.status for r in responses}
    assert len(statuses) == 1 and statuses.pop() >= 500
    assert len({json.dumps(r.json["error"]["type"]) for r in responses}) == 1
    assert service.app.response_cache.stats()["entries"] == 0


def test_tool_runs_are_cached(start_app, client_for, upstream):
    service = start_app(config(upstream, models={"bmad-default": ["up/gpt-4o-mini"]}))
    client = client_for(service)
    body = {"input": {"idea": "plan a tiny app"}}
    first = client.post("/bmad/tools/analyst/run", body)
    assert first.status == 200, first.body
    assert first.getheader("X-Cache") == "MISS"
    second = client.post("/bmad/tools/analyst/run", body)
    assert second.getheader("X-Cache") == "HIT" and second.json == first.json
    other = client.post("/bmad/tools/analyst/run", {"input": {"idea": "plan a bigger app"}})
    assert other.getheader("X-Cache") == "MISS"
    assert len(chats(upstream)) == 2
    refused = client.post("/bmad/tools/analyst/run", {**body, "stream": True})
    assert refused.status == 400


def test_with_the_cache_off_nothing_changes(start_app, client_for, upstream):
    service = start_app(config(upstream, cache={"enabled": False}))
    client = client_for(service)
    for _ in range(2):
        resp = client.post("/v1/chat/completions", BODY)
        assert resp.status == 200 and resp.getheader("X-Cache") is None
    assert len(chats(upstream)) == 2


def test_provider_class_limit_answers_in_the_openai_shape(start_app, client_for, upstream):
    service = start_app(config(upstream, rate_limits={"enabled": True}), clock=FakeClock())
    client = client_for(service)
    codes = [client.post("/v1/chat/completions", BODY).status for _ in range(5)]
    refused = client.post("/v1/chat/completions", BODY)
    assert codes == [200] * 5 and refused.status == 429
    assert refused.json == {"error": {"message": refused.json["error"]["message"], "type": "rate_limited",
                                      "param": None, "code": "rate_limited"}}
    assert refused.getheader("Retry-After") == "2" and refused.getheader("RateLimit-Policy") == "50;w=60"
    assert refused.getheader("RateLimit-Limit") == "50"


@pytest.mark.parametrize("headers,mode", [
    ({}, "default"), ({"cache-control": "no-cache"}, "no-cache"), ({"cache-control": "No-Store"}, "no-store"),
    ({"cache-control": "max-age=0, no-store, no-cache"}, "no-store"), ({"pragma": "no-cache"}, "no-cache"),
    ({"cache-control": "private"}, "default"),
])
def test_cache_mode(headers, mode):
    assert cache_mode(headers) == mode


def test_performance_reports_the_routers_pool_and_breakers(start_app, client_for, upstream):
    service = start_app(config(upstream))
    client = client_for(service)
    client.post("/v1/chat/completions", BODY)
    stats = client.get("/bmad/performance").json["stats"]
    assert stats["circuit_breakers"] == {"up": "closed"}
    assert stats["connection_pool"] == service.app.llm.pool_stats() != {}
    assert service.app.dedup.timeout == service.app.llm.max_timeout() == 1.0


def test_a_hit_is_recorded_as_a_cache_hit_event(start_app, client_for, upstream):
    from tests.analytics_support import db_rows
    service = start_app(config(upstream, analytics={"enabled": True}))
    client = client_for(service, {"X-User-ID": "carol"})
    client.post("/v1/chat/completions", BODY)
    assert client.post("/v1/chat/completions", BODY).getheader("X-Cache") == "HIT"
    assert service.app.analytics.flush()
    rows = db_rows(service, "SELECT user_id, route FROM events WHERE type = 'cache_hit'")
    assert [tuple(r) for r in rows] == [("carol", "/v1/chat/completions")]
