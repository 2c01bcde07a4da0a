"""Proves tests/fakes/upstream.py speaks the real provider wire formats.

The fakes are driven with the OFFICIAL openai / anthropic SDKs (retries disabled) and,
for faults, with plain http.client over 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from tests.fakes.upstream import FAULT_NAMES, FakeUpstream, RecordedRequest

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

KEY = "sk-test-key"
MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello there, fake upstream!"}]
OPENAI_BODY = {"model": "gpt-4o-mini", "messages": MSGS}
ANTHROPIC_BODY = {"model": "claude-3-5-haiku-20241022", "max_tokens": 32, "messages": [MSGS[1]]}
ANTHROPIC_HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}


@pytest.fixture
def oa():
    with FakeUpstream("openai", api_key=KEY) as up:
        yield up


@pytest.fixture
def an():
    with FakeUpstream("anthropic", api_key=KEY) as up:
        yield up


@pytest.fixture
def az():
    with FakeUpstream("azure", api_key=KEY) as up:
        yield up


def _conn(up: FakeUpstream, timeout: float = 5.0) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", up.port, timeout=timeout)


def _post(conn, path, body, headers=None):
    h = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    h.update(headers or {})
    conn.request("POST", path, body=json.dumps(body), headers=h)
    return conn.getresponse()


def _sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    """Parse an SSE body into (event, data) pairs."""
    out = []
    for block in raw.decode("utf-8").split("\n\n"):
        if not block.strip():
            continue
        ev, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        out.append((ev, "\n".join(data)))
    return out


# --------------------------------------------------------------------------- OpenAI SDK


def test_openai_sdk_non_stream(oa):
    client = openai.OpenAI(base_url=oa.base_url, api_key=KEY, max_retries=0)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert r.id.startswith("chatcmpl-")
    assert r.object == "chat.completion"
    assert r.model == "gpt-4o-mini"
    assert isinstance(r.created, int)
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "fake-openai reply to: Hello there, fake upstream!"
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (11, 7, 18)

    rec = oa.last_request
    assert isinstance(rec, RecordedRequest)
    assert (rec.method, rec.path, rec.route) == ("POST", "/v1/chat/completions", "chat")
    assert rec.headers["authorization"] == f"Bearer {KEY}"
    assert rec["json"]["messages"] == MSGS
    assert oa.base_url == f"http://127.0.0.1:{oa.port}/v1"


def test_openai_sdk_stream_include_usage(oa):
    oa.reply = "Hello from fake"
    oa.usage = (3, 4)
    client = openai.OpenAI(base_url=oa.base_url, api_key=KEY, max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from fake"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (3, 4, 7)
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_raw_sse_framing(oa):
    conn = _conn(oa)
    resp = _post(conn, "/v1/chat/completions", {**OPENAI_BODY, "stream": True})
    assert resp.status == 200
    assert resp.getheader("content-type").startswith("text/event-stream")
    assert resp.getheader("transfer-encoding") == "chunked"
    events = _sse_events(resp.read())
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert all("usage" not in c for c in chunks)  # include_usage not requested
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    # keep-alive survives a chunked stream
    resp2 = _post(conn, "/v1/chat/completions", OPENAI_BODY)
    assert resp2.status == 200 and json.loads(resp2.read())["object"] == "chat.completion"
    assert oa.connections_accepted == 1


def test_openai_sdk_models_and_auth(oa):
    client = openai.OpenAI(base_url=oa.base_url, api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "gpt-4o"]
    assert oa.last_request.route == "health"
    bad = openai.OpenAI(base_url=oa.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as ei:
        bad.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert ei.value.status_code == 401
    assert set(ei.value.body) == {"message", "type", "param", "code"}
    assert ei.value.body["code"] == "invalid_api_key"


# --------------------------------------------------------------------------- Azure SDK


def test_azure_sdk_chat_stream_and_models(az):
    client = openai.AzureOpenAI(azure_endpoint=az.base_url, api_key=KEY, api_version="2024-06-01", max_retries=0)
    r = client.chat.completions.create(model="my-deploy", messages=MSGS)
    assert r.choices[0].message.content == "fake-azure reply to: Hello there, fake upstream!"
    assert r.usage.total_tokens == 18
    rec = az.last_request
    assert rec.path == "/openai/deployments/my-deploy/chat/completions"
    assert rec.query == {"api-version": "2024-06-01"}
    assert rec.headers["api-key"] == KEY

    chunks = list(
        client.chat.completions.create(
            model="my-deploy", messages=MSGS, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("fake-azure reply")
    assert chunks[-1].usage.total_tokens == 18

    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "gpt-4o"]
    assert az.last_request.path == "/openai/models" and az.last_request.route == "health"

    bad = openai.AzureOpenAI(azure_endpoint=az.base_url, api_key="nope", api_version="2024-06-01", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="my-deploy", messages=MSGS)


def test_azure_requires_api_version_and_known_deployment(az):
    az.deployments = {"gpt-4o-mini"}
    conn = _conn(az)
    resp = _post(conn, "/openai/deployments/gpt-4o-mini/chat/completions", {"messages": MSGS}, {"api-key": KEY})
    assert resp.status == 404 and json.loads(resp.read())["error"]["message"] == "Resource not found"
    resp = _post(conn, "/openai/deployments/other/chat/completions?api-version=2024-06-01", {"messages": MSGS}, {"api-key": KEY})
    assert resp.status == 404 and json.loads(resp.read())["error"]["code"] == "DeploymentNotFound"
    conn.request("GET", "/openai/deployments?api-version=2022-12-01", headers={"api-key": KEY})
    resp = conn.getresponse()
    assert resp.status == 200 and [d["id"] for d in json.loads(resp.read())["data"]] == ["gpt-4o-mini"]


# --------------------------------------------------------------------------- Anthropic SDK


def test_anthropic_sdk_non_stream(an):
    client = anthropic.Anthropic(base_url=an.base_url, api_key=KEY, max_retries=0)
    m = client.messages.create(**ANTHROPIC_BODY)
    assert m.id.startswith("msg_")
    assert (m.type, m.role, m.model) == ("message", "assistant", "claude-3-5-haiku-20241022")
    assert m.content[0].type == "text"
    assert m.content[0].text == "fake-anthropic reply to: Hello there, fake upstream!"
    assert (m.stop_reason, m.stop_sequence) == ("end_turn", None)
    assert (m.usage.input_tokens, m.usage.output_tokens) == (11, 7)
    rec = an.last_request
    assert rec.path == "/v1/messages" and rec.headers.get("anthropic-version")
    assert an.base_url == f"http://127.0.0.1:{an.port}"


def test_anthropic_sdk_stream(an):
    an.reply = "Hello from fake"
    client = anthropic.Anthropic(base_url=an.base_url, api_key=KEY, max_retries=0)
    with client.messages.stream(**ANTHROPIC_BODY) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "Hello from fake" and len(pieces) == 3
    assert final.content[0].text == "Hello from fake"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 7)
    assert final.stop_reason == "end_turn"


def test_anthropic_raw_sse_event_sequence(an):
    resp = _post(_conn(an), "/v1/messages", {**ANTHROPIC_BODY, "stream": True}, ANTHROPIC_HEADERS)
    assert resp.status == 200 and resp.getheader("transfer-encoding") == "chunked"
    events = _sse_events(resp.read())
    names = [e for e, _ in events]
    assert names == [
        "message_start", "content_block_start", "ping",
        "content_block_delta", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]
    datas = [json.loads(d) for _, d in events]
    assert all(d["type"] == n for n, d in zip(names, datas))
    assert datas[0]["message"]["usage"]["input_tokens"] == 11
    assert datas[7]["usage"] == {"output_tokens": 7}
    assert datas[7]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


def test_anthropic_errors_and_models(an):
    conn = _conn(an)
    body = {k: v for k, v in ANTHROPIC_BODY.items() if k != "max_tokens"}
    resp = _post(conn, "/v1/messages", body, ANTHROPIC_HEADERS)
    err = json.loads(resp.read())
    assert resp.status == 400 and err["type"] == "error"
    assert err["error"]["type"] == "invalid_request_error" and "max_tokens" in err["error"]["message"]
    resp = _post(conn, "/v1/messages", ANTHROPIC_BODY, {"x-api-key": KEY})  # no anthropic-version
    assert resp.status == 400 and json.loads(resp.read())["error"]["type"] == "invalid_request_error"

    client = anthropic.Anthropic(base_url=an.base_url, api_key=KEY, max_retries=0)
    page = client.models.list()
    assert [m.id for m in page.data] == ["claude-3-5-haiku-20241022", "claude-sonnet-4-20250514"]
    assert page.data[0].display_name == "Claude 3.5 Haiku" and page.has_more is False
    with pytest.raises(anthropic.AuthenticationError) as ei:
        anthropic.Anthropic(base_url=an.base_url, api_key="bad", max_retries=0).messages.create(**ANTHROPIC_BODY)
    assert ei.value.body["error"]["type"] == "authentication_error"


# --------------------------------------------------------------------------- faults


def test_status_fault_times_then_recovers(oa):
    oa.fault("status", times=2, status=503)
    conn = _conn(oa)
    for _ in range(2):
        resp = _post(conn, "/v1/chat/completions", OPENAI_BODY)
        err = json.loads(resp.read())["error"]
        assert resp.status == 503 and set(err) == {"message", "type", "param", "code"}
        assert err["type"] == "server_error"
    resp = _post(conn, "/v1/chat/completions", OPENAI_BODY)
    assert resp.status == 200 and json.loads(resp.read())["choices"]
    assert [r.fault for r in oa.requests] == ["status", "status", None]


def test_status_fault_visible_through_sdk(an):
    an.fault("status", times=1, status=529)
    client = anthropic.Anthropic(base_url=an.base_url, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as ei:
        client.messages.create(**ANTHROPIC_BODY)
    assert ei.value.status_code == 529
    assert ei.value.body["error"]["type"] == "overloaded_error"
    assert client.messages.create(**ANTHROPIC_BODY).content[0].text  # fault consumed


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_rate_limit_retry_after(kind):
    with FakeUpstream(kind) as up:
        up.fault("rate_limit", retry_after=7)
        path, body = ("/v1/chat/completions", OPENAI_BODY) if kind == "openai" else ("/v1/messages", ANTHROPIC_BODY)
        resp = _post(_conn(up), path, body, ANTHROPIC_HEADERS)
        assert resp.status == 429 and resp.getheader("Retry-After") == "7"
        err = json.loads(resp.read())
        if kind == "openai":
            assert err["error"]["code"] == "rate_limit_exceeded"
        else:
            assert err["type"] == "error" and err["error"]["type"] == "rate_limit_error"


def test_reset_fault(oa):
    oa.fault("reset", times=1)
    with pytest.raises(ConnectionResetError):  # includes http.client.RemoteDisconnected
        _post(_conn(oa), "/v1/chat/completions", OPENAI_BODY)
    assert oa.requests[0].fault == "reset"
    assert _post(_conn(oa), "/v1/chat/completions", OPENAI_BODY).status == 200


def test_hang_is_released_by_stop_quickly():
    up = FakeUpstream("openai").start()
    up.fault("hang", seconds=30)
    outcome: dict = {}

    def client():
        try:
            _post(_conn(up, timeout=10), "/v1/chat/completions", OPENAI_BODY)
            outcome["result"] = "answered"
        except Exception as e:  # noqa: BLE001
            outcome["result"] = e

    t = threading.Thread(target=client, daemon=True)
    t.start()
    up.wait_for_requests(1)
    t0 = time.monotonic()
    up.stop()
    elapsed = time.monotonic() - t0
    t.join(3)
    assert elapsed < 2.0 and not t.is_alive()
    assert isinstance(outcome["result"], (ConnectionError, http.client.HTTPException))


def test_keepalive_reuse_is_counted(oa):
    conn = _conn(oa)
    for _ in range(5):
        resp = _post(conn, "/v1/chat/completions", OPENAI_BODY)
        assert resp.status == 200
        resp.read()
    assert oa.connections_accepted == 1
    assert {r.connection_id for r in oa.requests} == {1}
    other = _conn(oa)
    _post(other, "/v1/chat/completions", OPENAI_BODY).read()
    assert oa.connections_accepted == 2
    oa.reset()
    assert oa.connections_accepted == 0 and oa.requests == []


def test_malformed_truncated_huge(oa):
    oa.fault("malformed", times=1)
    oa.fault("truncated", times=1)
    oa.fault("huge", times=1)
    conn = _conn(oa)
    resp = _post(conn, "/v1/chat/completions", OPENAI_BODY)
    assert resp.status == 200 and resp.getheader("content-type") == "application/json"
    with pytest.raises(ValueError):
        json.loads(resp.read())

    resp = _post(conn, "/v1/chat/completions", OPENAI_BODY)
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead):
        resp.read()

    resp = _post(_conn(oa), "/v1/chat/completions", OPENAI_BODY)
    raw = resp.read()
    assert len(raw) == 11 * 1024 * 1024 == int(resp.getheader("content-length"))
    assert json.loads(raw)["object"] == "chat.completion"


def test_slow_stream_spacing(an):
    an.fault("slow_stream", interval=0.02)
    t0 = time.monotonic()
    resp = _post(_conn(an), "/v1/messages", {**ANTHROPIC_BODY, "stream": True}, ANTHROPIC_HEADERS)
    events = _sse_events(resp.read())
    assert len(events) == 9 and time.monotonic() - t0 >= 8 * 0.02 * 0.9
    # non-stream requests do not consume the stream-only fault
    resp = _post(_conn(an), "/v1/messages", ANTHROPIC_BODY, ANTHROPIC_HEADERS)
    assert resp.status == 200 and an.requests[-1].fault is None


def test_reset_mid_stream(oa):
    oa.fault("reset_mid_stream", after=2)
    client = openai.OpenAI(base_url=oa.base_url, api_key=KEY, max_retries=0)
    got = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True):
            got.append(chunk)
    assert len(got) == 2 and got[0].choices[0].delta.role == "assistant"


def test_down_and_revive_on_same_port(oa):
    port = oa.port
    idle = _conn(oa)
    _post(idle, "/v1/chat/completions", OPENAI_BODY).read()
    oa.fault("down")
    assert oa.is_down
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises((OSError, http.client.HTTPException)):  # pooled connection was cut
        _post(idle, "/v1/chat/completions", OPENAI_BODY).read()
    oa.revive()
    assert not oa.is_down and oa.port == port
    assert _post(_conn(oa), "/v1/chat/completions", OPENAI_BODY).status == 200


def test_health_scoped_fault_and_delay(oa):
    oa.fault("status", health=True, status=500)
    conn = _conn(oa)
    conn.request("GET", "/v1/models", headers={"authorization": f"Bearer {KEY}"})
    resp = conn.getresponse()
    assert resp.status == 500
    resp.read()
    oa.delay_seconds = 0.05
    t0 = time.monotonic()
    resp = _post(conn, "/v1/chat/completions", OPENAI_BODY)
    assert resp.status == 200 and resp.read()  # chat unaffected by the health fault
    assert time.monotonic() - t0 >= 0.045
    oa.clear_faults()
    conn.request("GET", "/v1/models", headers={"authorization": f"Bearer {KEY}"})
    assert conn.getresponse().status == 200


def test_stop_is_bounded_with_open_and_streaming_connections():
    up = FakeUpstream("openai").start()
    up.fault("slow_stream", interval=5)
    idle = _conn(up)
    _post(idle, "/v1/chat/completions", OPENAI_BODY).read()  # idle keep-alive connection
    streaming = _conn(up)
    resp = _post(streaming, "/v1/chat/completions", {**OPENAI_BODY, "stream": True})
    assert resp.status == 200
    t0 = time.monotonic()
    up.stop()
    assert time.monotonic() - t0 < 2.0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", up.port), timeout=1).close()


def test_fault_validation():
    assert "down" in FAULT_NAMES
    up = FakeUpstream("openai")
    with pytest.raises(ValueError):
        up.fault("nope")
    with pytest.raises(TypeError):
        up.fault("status", stauts=500)
    with pytest.raises(ValueError):
        FakeUpstream("bedrock")
