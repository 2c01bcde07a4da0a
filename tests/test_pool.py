"""The upstream connection pool, against real HTTP servers on 127.0.0.1."""

import json
import socket
import threading
import time

import pytest

from bmad.providers.pool import ConnectionPool, PoolExhausted, ResponseTooLarge
from tests.fakes.upstream import FakeUpstream
from tests.llm_support import entry, gateway_config

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def up():
    with FakeUpstream("openai") as server:
        yield server


def host_pool(up, **kw):
    pool = ConnectionPool(max_total=kw.pop("max_total", 200))
    return pool, pool.add_host("fake", "http", "127.0.0.1", up.port, **{"max_connections": 4,
                                                                        "connect_timeout": 1.0,
                                                                        "read_timeout": 2.0, **kw})


def post(hp):
    response = hp.request("POST", "/v1/chat/completions", BODY, HEADERS)
    return response.status, json.loads(response.read_all(1 << 20))


def test_sequential_requests_share_one_connection(up):
    pool, hp = host_pool(up)
    for _ in range(100):
        status, body = post(hp)
        assert status == 200 and body["object"] == "chat.completion"
    assert up.connections_accepted == 1
    stats = pool.stats()
    assert stats["created"] == 1 and stats["reused"] == 99
    assert stats["open"] == 1 and stats["idle"] == 1 and stats["in_use"] == 0
    assert stats["providers"]["fake"]["host"] == f"127.0.0.1:{up.port}"


def test_threads_share_the_pool_within_its_limit(up):
    up.delay_seconds = 0.02
    pool, hp = host_pool(up, max_connections=3)
    errors = []

    def worker():
        try:
            for _ in range(10):
                assert post(hp)[0] == 200
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors
    assert up.connections_accepted <= 3
    assert pool.stats()["open"] <= 3


def test_read1_to_the_end_of_a_fixed_length_body_then_reuse(up):
    """read1() alone never marks a fixed-length response finished; release() must, or the
    next request on the connection fails with ResponseNotReady."""
    pool, hp = host_pool(up)
    for _ in range(3):
        response = hp.request("POST", "/v1/chat/completions", BODY, HEADERS)
        assert response.header("Content-Length")
        data = b""
        while True:
            chunk = response.read_some()
            if not chunk:
                break
            data += chunk
        assert json.loads(data)["object"] == "chat.completion"
        response.release()
    assert up.connections_accepted == 1
    assert pool.stats()["reused"] == 2


def test_a_half_read_response_closes_its_connection(up):
    pool, hp = host_pool(up)
    response = hp.request("POST", "/v1/chat/completions", BODY, HEADERS)
    response.response.read(10)
    response.release()  # not read to the end: must not go back to the pool
    assert pool.stats()["open"] == 0
    assert post(hp)[0] == 200
    assert up.connections_accepted == 2


def test_a_connection_the_upstream_reset_is_retried_once_on_a_fresh_one(up):
    pool, hp = host_pool(up)
    assert post(hp)[0] == 200
    up.fault("reset", times=1)  # the pooled connection dies as the next request arrives
    assert post(hp)[0] == 200
    assert up.connections_accepted == 2
    assert pool.stats()["discarded"] == 1


def test_a_fresh_connection_is_not_retried(up):
    pool, hp = host_pool(up)
    up.fault("reset", times=1)
    with pytest.raises(ConnectionResetError):
        post(hp)
    assert pool.stats()["open"] == 0


class ClosingServer:
    """Answers each connection's first request, then closes it (an upstream with a short keep-alive)."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.closed = threading.Semaphore(0)  # released once a connection is closed
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]) if b"content-length" in head.lower() else 0
                while len(rest) < length:
                    rest += conn.recv(65536)
                conn.sendall(self.RESPONSE)
            self.closed.release()

    def close(self):
        self.sock.close()


def test_an_idle_connection_the_upstream_closed_is_noticed_before_reuse():
    server = ClosingServer()
    try:
        pool = ConnectionPool()
        hp = pool.add_host("closing", "http", "127.0.0.1", server.port, max_connections=2, connect_timeout=1.0,
                           read_timeout=2.0)
        for _ in range(5):
            response = hp.request("POST", "/x", b"{}", HEADERS)
            assert response.read_all(1000) == b"{}"
            assert server.closed.acquire(timeout=2)  # the server's FIN is on its way
        assert server.accepted == 5
        stats = pool.stats()
        assert stats["discarded"] == 4
        assert stats["reused"] == 0  # no request went out on a closed connection
    finally:
        server.close()


def test_a_connection_close_answer_is_read_to_the_end_within_a_deadline(up):
    up.keep_alive = False  # every answer says Connection: close, and http.client drops conn.sock
    pool, hp = host_pool(up)
    for _ in range(2):
        response = hp.request("POST", "/v1/chat/completions", BODY, HEADERS)
        assert json.loads(response.read_all(1 << 20, deadline=time.monotonic() + 5))["choices"]
    stats = pool.stats()
    assert stats["open"] == 0 and stats["in_use"] == 0 and stats["reused"] == 0
    assert up.connections_accepted == 2


def test_response_larger_than_the_limit_is_refused_and_the_connection_closed(up):
    pool, hp = host_pool(up)
    up.fault("huge", times=1, size=200_000)
    response = hp.request("POST", "/v1/chat/completions", BODY, HEADERS)
    with pytest.raises(ResponseTooLarge):
        response.read_all(100_000)
    assert pool.stats()["open"] == 0


def test_a_full_pool_waits_then_gives_up(up):
    pool, hp = host_pool(up, max_connections=1, connect_timeout=0.2)
    held = hp.request("POST", "/v1/chat/completions", BODY, HEADERS)
    started = time.monotonic()
    with pytest.raises(PoolExhausted):
        hp.request("POST", "/v1/chat/completions", BODY, HEADERS)
    assert 0.15 < time.monotonic() - started < 2
    held.read_all(1 << 20)
    assert post(hp)[0] == 200


def test_the_total_cap_takes_an_idle_connection_from_another_host(up):
    pool = ConnectionPool(max_total=1)
    a = pool.add_host("a", "http", "127.0.0.1", up.port, max_connections=2, connect_timeout=0.5, read_timeout=2.0)
    b = pool.add_host("b", "http", "127.0.0.1", up.port, max_connections=2, connect_timeout=0.5, read_timeout=2.0)
    assert post(a)[0] == 200
    assert post(b)[0] == 200  # a's idle connection was closed to make room
    stats = pool.stats()
    assert stats["open"] == 1 and stats["providers"]["a"]["open"] == 0


def test_connection_refused_frees_the_slot():
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    pool = ConnectionPool()
    hp = pool.add_host("gone", "http", "127.0.0.1", port, max_connections=1, connect_timeout=0.5, read_timeout=1.0)
    for _ in range(3):
        with pytest.raises(ConnectionRefusedError):
            hp.request("GET", "/", None, {})
    assert pool.stats()["open"] == 0


def test_gateway_reuses_upstream_connections(start_app, client_for, up):
    """100 sequential completions through the gateway -> a handful of TCP connections upstream."""
    service = start_app(gateway_config(entry(up)))
    client = client_for(service)
    for i in range(100):
        r = client.post("/v1/chat/completions", {"model": "gpt-4o-mini",
                                                 "messages": [{"role": "user", "content": f"n{i}"}]})
        assert r.status == 200
    assert up.connections_accepted <= 3
    stats = service.app.llm.pool_stats()
    assert stats["reused"] >= 97
    assert stats["providers"]["openai"]["open"] >= 1
    metrics = client.get("/bmad/metrics").body.decode()
    assert 'bmad_pool_connections{provider="openai",state="idle"} 1.0' in metrics


def test_gateway_answers_through_an_upstream_that_closes_every_connection(start_app, client_for, up):
    up.keep_alive = False
    client = client_for(start_app(gateway_config(entry(up))))
    for i in range(3):
        r = client.post("/v1/chat/completions", {"model": "gpt-4o-mini",
                                                 "messages": [{"role": "user", "content": f"close {i}"}]})
        assert r.status == 200, r.body
        assert r.json["choices"][0]["message"]["content"]
        stream = client.post("/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True,
                                                      "messages": [{"role": "user", "content": f"stream {i}"}]})
        assert stream.status == 200 and stream.body.rstrip().endswith(b"data: [DONE]"), stream.body
    assert up.connections_accepted == 6
