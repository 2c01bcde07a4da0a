"""The stdlib Redis client against a real redis-server, and against a server that misbehaves."""

import socket
import threading

import pytest

from bmad.state.redis import Reader, Redis, RedisConnectionError, RedisError, encode
from tests.servers import free_port, redis_process
from tests.support import eventually


@pytest.fixture(scope="module")
def redis_server():
    """A throwaway redis-server on 127.0.0.1 with a password; yields its port."""
    with redis_process("s3cret-pass") as server:
        yield server.port


@pytest.fixture
def client(redis_server):
    client = Redis.from_url(f"redis://:s3cret-pass@127.0.0.1:{redis_server}/3")
    client.execute("FLUSHDB")
    yield client
    client.close()


def test_bulk_strings_keep_crlf_binary_and_non_ascii(client):
    value = b"line one\r\nline two\x00\xff" + "é漢".encode("utf-8")
    assert client.execute("SET", "k", value) == b"OK"
    assert client.execute("GET", "k") == value
    assert client.execute("GET", "missing") is None
    assert client.execute("INCRBY", "n", 41) == 41 and client.execute("INCR", "n") == 42


def test_error_replies_raise_with_the_servers_code(client):
    client.execute("SET", "s", "text")
    with pytest.raises(RedisError) as caught:
        client.execute("LPUSH", "s", "x")
    assert caught.value.code == "WRONGTYPE"
    assert client.execute("PING") == b"PONG"  # the connection stays usable after an error reply


def test_a_pipeline_answers_in_order_with_errors_in_place(client):
    replies = client.pipeline([("SET", "a", "1"), ("INCR", "a"), ("HGET", "a", "f"), ("GET", "a")])
    assert replies[:2] == [b"OK", 2] and isinstance(replies[2], RedisError) and replies[3] == b"2"


def test_scripts_run_by_sha_and_reload_after_a_flush(client):
    incr_to = client.script("local v = redis.call('INCRBY', KEYS[1], ARGV[1]) return v")
    assert incr_to(["c"], [5]) == 5
    client.execute("SCRIPT", "FLUSH")
    assert incr_to(["c"], [2]) == 7


def test_the_database_number_and_password_come_from_the_url(redis_server):
    three = Redis.from_url(f"redis://:s3cret-pass@127.0.0.1:{redis_server}/3")
    four = Redis.from_url(f"redis://:s3cret-pass@127.0.0.1:{redis_server}/4")
    three.execute("SET", "where", "three")
    assert four.execute("GET", "where") is None
    with pytest.raises(RedisError) as caught:
        Redis.from_url(f"redis://:wrong-password@127.0.0.1:{redis_server}/0").execute("PING")
    assert caught.value.code in ("WRONGPASS", "ERR") and "wrong-password" not in str(caught.value)
    assert "s3cret" not in repr(three)


def test_an_idle_connection_the_server_closed_is_replaced(client, redis_server):
    client.execute("SET", "x", "1")
    pooled_id = client.execute("CLIENT", "ID")
    other = Redis.from_url(f"redis://:s3cret-pass@127.0.0.1:{redis_server}/3")
    assert other.execute("CLIENT", "KILL", "ID", pooled_id) == 1
    other.close()
    eventually(lambda: client._idle[-1].stale(), what="the killed connection to be readable")
    assert client.execute("GET", "x") == b"1"
    assert client.execute("CLIENT", "ID") != pooled_id


class _Misbehaving:
    """A TCP server that answers every command with ``reply`` and then closes."""

    def __init__(self, reply):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(self.reply)

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("reply", [b"$10\r\nonly", b"*2\r\n:1\r\n", b"", b"?what\r\n", b":notanumber\r\n"])
def test_a_server_that_closes_mid_reply_is_a_connection_error(reply):
    server = _Misbehaving(reply)
    try:
        client = Redis("127.0.0.1", server.port, timeout=2)
        with pytest.raises(RedisConnectionError):
            client.execute("GET", "k")
        assert client._idle == []  # a broken connection is never reused
    finally:
        server.close()


def test_nothing_listening_is_a_connection_error():
    with pytest.raises(RedisConnectionError):
        Redis("127.0.0.1", free_port(), connect_timeout=0.5).execute("PING")


def test_framing_round_trips_through_the_reader():
    frames = iter([encode(("SET", "k", b"a\r\nb"))])
    reader = Reader(lambda n: next(frames, b""))
    assert reader.reply() == [b"SET", b"k", b"a\r\nb"]
    with pytest.raises(TypeError):
        encode(("SET", "k", True))
