"""The OpenAI-compatible endpoints, driven by the official ``openai`` SDK over real sockets."""

import json

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.llm_support import UPSTREAM_KEY, assert_no_secret, entry, gateway_config, EventLog
from tests.support import eventually, poll

openai = pytest.importorskip("openai")

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello to the SDK"}]


def sdk(service, key="unused"):
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key=key, max_retries=0, timeout=10)


@pytest.fixture(params=["openai", "anthropic", "azure"])
def upstream(request):
    with FakeUpstream(request.param, api_key=UPSTREAM_KEY, usage=(13, 5)) as up:
        yield up


def test_sdk_non_streamed_against_each_provider_kind(start_app, upstream):
    service = start_app(gateway_config(entry(upstream, "up")))
    raw = sdk(service).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == f"fake-{upstream.kind} reply to: Say hello to the SDK"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == \
        (13, 5, 18)
    assert completion.id and completion.created and completion.model
    assert raw.headers["X-BMAD-Provider"] == "up"
    assert raw.headers["X-BMAD-Model"] == "gpt-4o-mini"
    assert raw.headers["X-BMAD-Attempts"] == "1"
    assert_no_secret(service, raw.http_response.text, str(raw.headers))


def test_sdk_streaming_against_each_provider_kind(start_app, upstream):
    service = start_app(gateway_config(entry(upstream, "up")))
    with sdk(service).chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}) as raw:
        assert raw.headers["Content-Type"].startswith("text/event-stream")
        assert raw.headers["Cache-Control"] == "no-cache"
        assert raw.headers["X-Accel-Buffering"] == "no"
        assert raw.headers["Transfer-Encoding"] == "chunked"
        assert raw.headers["X-BMAD-Provider"] == "up"
        chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"fake-{upstream.kind} reply to: Say hello to the SDK"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage.prompt_tokens == 13 and chunks[-1].usage.completion_tokens == 5
    # The stream's usage is counted when the gateway's generator finishes, just after [DONE] is sent.
    status = eventually(lambda: next((s for s in service.app.llm.providers_status() if s["completion_tokens"]), None))
    assert status["prompt_tokens"] == 13 and status["completion_tokens"] == 5
    assert_no_secret(service)


def test_stream_without_include_usage_has_no_usage_chunk_but_usage_is_still_counted(start_app, upstream):
    events = EventLog()
    service = start_app(gateway_config(entry(upstream, "up", models=["gpt-4o-mini"])), events=events)
    chunks = list(sdk(service).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks if upstream.kind != "azure")
    assert all(c.usage is None for c in chunks)
    if upstream.kind != "anthropic":
        assert upstream.requests[-1].json["stream_options"] == {"include_usage": True}
    [event] = eventually(lambda: events.of("provider_request"))
    assert (event["prompt_tokens"], event["completion_tokens"]) == (13, 5)
    assert event["cost_usd"] == pytest.approx((13 * 0.15 + 5 * 0.60) / 1e6)


def test_models_list(start_app, client_for):
    with FakeUpstream("openai") as a, FakeUpstream("anthropic") as b:
        service = start_app(gateway_config(entry(a, "oa", models=["gpt-4o-mini", "gpt-4o"]),
                                           entry(b, "claude", models=["claude-haiku-4-5"]),
                                           models={"cheap": ["oa/gpt-4o-mini", {"provider": "claude",
                                                                                "model": "claude-haiku-4-5"}]}))
        listing = sdk(service).models.list()
        ids = [m.id for m in listing.data]
        assert ids == ["cheap", "bmad-default", "gpt-4o-mini", "gpt-4o", "claude-haiku-4-5"]
        owners = {m.id: m.owned_by for m in listing.data}
        assert owners["bmad-default"] == "bmad-api" and owners["gpt-4o"] == "oa"
        assert client_for(service).get("/v1/models").json["object"] == "list"


def test_models_list_includes_what_a_health_check_discovered(start_app):
    with FakeUpstream("openai", models=["llama-3-8b"]) as a:
        service = start_app(gateway_config(entry(a, "local")))
        service.app.llm.health.check_all()
        assert "llama-3-8b" in [m.id for m in sdk(service).models.list().data]


def test_unknown_model_is_404_model_not_found(start_app):
    with FakeUpstream("openai") as a:
        service = start_app(gateway_config(entry(a, "oa", models=["gpt-4o-mini"])))
        with pytest.raises(openai.NotFoundError) as caught:
            sdk(service).chat.completions.create(model="gpt-99", messages=MESSAGES)
        assert caught.value.code == "model_not_found"
        assert caught.value.body["param"] == "model"
        assert "gpt-99" in caught.value.message
        assert a.requests == []


@pytest.mark.parametrize("body, param", [
    ({"messages": MESSAGES}, "model"),
    ({"model": "m"}, "messages"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": "m", "messages": MESSAGES, "temperature": 3}, "temperature"),
    ({"model": "m", "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
    ({"model": "m", "messages": MESSAGES, "stream": "yes"}, "stream"),
    ({"model": "m", "messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
])
def test_bad_requests_name_the_field_in_the_openai_error_shape(start_app, client_for, body, param):
    service = start_app(gateway_config())
    r = client_for(service).post("/v1/chat/completions", body)
    assert r.status == 400
    assert set(r.json["error"]) == {"message", "type", "param", "code"}
    assert r.json["error"]["param"] == param


def test_upstream_4xx_goes_back_without_failover(start_app):
    with FakeUpstream("openai", api_key=UPSTREAM_KEY) as a, FakeUpstream("openai") as b:
        service = start_app(gateway_config(entry(a, "a"), entry(b, "b"), routing={"strategy": "priority"}))
        a.fault("status", times=1, status=422, message="bad temperature for this model")
        with pytest.raises(openai.UnprocessableEntityError) as caught:
            sdk(service).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert "bad temperature" in caught.value.message and "'a'" in caught.value.message
        assert caught.value.response.headers["X-BMAD-Attempts"] == "1"
        assert [r for r in b.requests if r.route == "chat"] == []


def test_upstream_401_with_our_key_in_the_message_is_scrubbed(start_app, client_for):
    with FakeUpstream("openai", api_key=UPSTREAM_KEY) as a:
        service = start_app(gateway_config(entry(a, "a")))
        a.fault("status", times=2, status=401, message=f"Incorrect API key provided: {UPSTREAM_KEY}.")
        r = client_for(service).post("/v1/chat/completions", {"model": "m", "messages": MESSAGES})
        assert r.status == 401
        assert "[redacted]" in r.json["error"]["message"]
        with pytest.raises(openai.AuthenticationError):
            sdk(service).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert_no_secret(service, r.body)


def test_failover_before_the_first_byte_of_a_stream(start_app):
    with FakeUpstream("openai") as a, FakeUpstream("anthropic") as b:
        service = start_app(gateway_config(entry(a, "a"), entry(b, "b"), routing={"strategy": "priority"}))
        a.fault("reset_mid_stream", times=1, after=0)
        with sdk(service).chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True) as raw:
            assert raw.headers["X-BMAD-Provider"] == "b"
            assert raw.headers["X-BMAD-Attempts"] == "2"
            text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        assert text == "fake-anthropic reply to: Say hello to the SDK"


def test_upstream_failure_mid_stream_ends_with_an_error_event(start_app, client_for):
    with FakeUpstream("openai") as a, FakeUpstream("openai") as b:
        events = EventLog()
        service = start_app(gateway_config(entry(a, "a"), entry(b, "b"), routing={"strategy": "priority"}), events=events)
        a.fault("reset_mid_stream", times=1, after=2)
        r = client_for(service).post("/v1/chat/completions", {"model": "m", "messages": MESSAGES, "stream": True})
        assert r.status == 200
        blocks = [b for b in r.body.decode().split("\n\n") if b]
        assert len(blocks) == 3 and "[DONE]" not in r.body.decode()
        error = json.loads(blocks[-1][6:])["error"]
        assert error["type"] == "upstream_error" and error["code"] == "connection_error"
        assert [x for x in b.requests if x.route == "chat"] == []  # no failover after the first byte
        with pytest.raises(openai.APIError):
            a.fault("reset_mid_stream", times=1, after=2)
            list(sdk(service).chat.completions.create(model="m", messages=MESSAGES, stream=True))
        assert [e["error_type"] for e in events.of("provider_failure")] == ["connection_error"] * 2


def test_slow_stream_arrives_event_by_event(start_app):
    with FakeUpstream("openai") as a:
        service = start_app(gateway_config(entry(a, "a")))
        a.fault("slow_stream", times=1, interval=0.15)
        import time
        stamps = []
        for chunk in sdk(service).chat.completions.create(model="m", messages=MESSAGES, stream=True):
            stamps.append(time.monotonic())
        assert len(stamps) >= 4
        assert stamps[-1] - stamps[0] > 0.3  # relayed as they came, not buffered to the end


def test_a_too_large_upstream_body_is_502(start_app, client_for):
    with FakeUpstream("openai") as a:
        service = start_app(gateway_config(entry(a, "a", max_response_bytes=100_000)))
        a.fault("huge", times=2, size=300_000)
        client = client_for(service)
        r = client.post("/v1/chat/completions", {"model": "m", "messages": MESSAGES})
        assert r.status == 502
        assert "max_response_bytes" in r.json["error"]["message"]
        r = client.post("/v1/chat/completions", {"model": "m", "messages": MESSAGES, "stream": True})
        assert r.status == 502


def test_default_max_response_bytes_is_10_mib(start_app, client_for):
    with FakeUpstream("openai") as a:
        service = start_app(gateway_config(entry(a, "a")))
        assert service.app.llm.providers[0].spec.max_response_bytes == 10 * 1024 * 1024
        a.fault("huge", times=1)  # 11 MiB
        r = client_for(service).post("/v1/chat/completions", {"model": "m", "messages": MESSAGES})
        assert r.status == 502


def test_offline_provider_streams_to_the_sdk(start_app):
    service = start_app(gateway_config(providers=[]))
    chunks = list(sdk(service).chat.completions.create(model="anything", messages=MESSAGES, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "no language model was called" in text
    assert chunks[0].model == "offline"


def test_no_key_in_any_response_header_or_log_line_after_a_mixed_session(start_app, client_for):
    with FakeUpstream("openai", api_key=UPSTREAM_KEY) as a, FakeUpstream("anthropic", api_key=UPSTREAM_KEY) as b:
        service = start_app(gateway_config(entry(a, "a"), entry(b, "b")))
        client = client_for(service)
        bodies = []
        a.fault("status", times=1, status=500, message=f"boom {UPSTREAM_KEY}")
        b.fault("status", times=1, status=401, message=f"bad key {UPSTREAM_KEY}")
        for stream in (False, True, False, True):
            r = client.post("/v1/chat/completions", {"model": "m", "messages": MESSAGES, "stream": stream})
            bodies += [r.body, str(r.getheaders())]
        for path in ("/bmad/providers", "/v1/models", "/bmad/metrics", "/bmad/health"):
            r = client.get(path)
            bodies += [r.body, str(r.getheaders())]
        service.app.llm.health.check_all()
        bodies.append(client.get("/bmad/providers").body)
        assert_no_secret(service, *bodies)


def test_a_client_that_leaves_mid_stream_frees_the_upstream_connection(start_app):
    import socket
    with FakeUpstream("openai") as a:
        events = EventLog()
        service = start_app(gateway_config(entry(a, "a")), events=events)
        a.fault("slow_stream", times=1, interval=0.3)
        body = json.dumps({"model": "m", "messages": MESSAGES, "stream": True}).encode()
        sock = socket.create_connection(("127.0.0.1", service.port), timeout=5)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        received = bytearray()

        def first_event():  # the head and first event may arrive in separate reads
            received.extend(sock.recv(65536))
            return b"data: " in received

        poll(first_event, timeout=5, interval=0)
        assert b"data: " in received
        sock.close()
        poll(lambda: events.of("provider_request"), timeout=5, interval=0.02)
        [event] = events.of("provider_request")
        assert event["status"] == "client_closed"
        stats = service.app.llm.pool_stats()
        assert stats["in_use"] == 0 and stats["open"] == 0  # a half-read stream is never pooled
        assert service.app.llm.breaker_states()["a"] == "closed"
