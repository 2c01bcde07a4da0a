"""Hostile input over real sockets: slowloris, smuggling and byte-level junk, hostile path parameters,
brute-forced keys, CORS and security headers. (Framing basics are in test_server.py.)"""

import re
import socket
import time

import pytest

from bmad.config import load
from bmad.errors import ConfigError
from tests.rawhttp import body_json, connect, is_closed, read_response
from tests.support import FakeClock, eventually

PREVIEW = "/bmad/tools/analyst/preview"
KEYS = {"auth": {"api_keys": [{"key": "alice-key-123", "user": "alice", "role": "admin"}]}}


# -- slowloris ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_slowloris_cannot_starve_a_normal_client(start_app, client_for):
    service = start_app({"server": {"header_timeout_seconds": 1.0}})
    head = b"GET /bmad/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 64
    slow = []
    opened_at = {}
    closed_after = {}
    for n in range(300):
        sock = socket.create_connection(("127.0.0.1", service.port), timeout=2)
        sock.setblocking(False)
        slow.append(sock)
        opened_at[sock] = time.monotonic()
    normal = client_for(service)
    worst = 0.0
    try:
        # One header byte per connection every 0.3 s, for 3 s at most.
        ends = time.monotonic() + 3.0
        position = 0
        while time.monotonic() < ends and len(closed_after) < len(slow):
            for sock in slow:
                if sock in closed_after:
                    continue
                try:
                    sock.send(head[position:position + 1])
                    if sock.recv(1) == b"":
                        closed_after[sock] = time.monotonic() - opened_at[sock]
                except BlockingIOError:
                    pass
                except OSError:
                    closed_after[sock] = time.monotonic() - opened_at[sock]
            position = (position + 1) % len(head)
            started = time.monotonic()
            assert normal.get("/bmad/health").status == 200
            worst = max(worst, time.monotonic() - started)
            time.sleep(0.3)
        assert worst < 1.0, f"a normal request took {worst:.3f} s during the attack"
        for sock in slow:  # whatever the loop did not see close must be closed by now
            if sock not in closed_after:
                sock.setblocking(True)
                assert is_closed(sock, timeout=1.5)
                closed_after[sock] = time.monotonic() - opened_at[sock]
        # Connections over the cap (256) are evicted early to make room; the rest at the 1 s header timeout.
        assert max(closed_after.values()) < 3.0
        assert eventually(lambda: service.server.open_connections <= 1, timeout=5)
    finally:
        for sock in slow:
            sock.close()


# -- byte-level junk and smuggling shapes -------------------------------------------------------------


def _answer(port, data):
    """Send ``data``; return (status, headers, body, closed-after)."""
    with connect(port, timeout=5) as sock:
        sock.sendall(data)
        status, headers, body = read_response(sock, 5)
        return status, headers, body, is_closed(sock, timeout=2)


@pytest.mark.parametrize("head, code", [
    ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 400),
    ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400),
    ("Content-Length: 5\r\nTransfer-Encoding: identity\r\n", 400),
    ("Transfer-Encoding: identity\r\n", 400),
    ("Content-Length: 5, 5\r\n", 400),
    ("Content-Length: +5\r\n", 400),
    ("Content-Length: 0x5\r\n", 400),
    ("X-Nul: a\x00b\r\n", 400),
    ("X-Bad\x00Name: a\r\n", 400),
])
def test_conflicting_framing_and_nul_headers_get_400_and_close(start_app, head, code):
    service = start_app()
    data = f"POST {PREVIEW} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{head}\r\nhello".encode()
    status, headers, body, closed = _answer(service.port, data)
    assert status == code and body_json(body)["status"] == "error"
    assert headers["connection"] == "close" and closed


@pytest.mark.parametrize("body", [
    b'{"input": "\xff\xfe not utf-8"}',
    b'{"input": "a\x00b"}',
    b"\x00" * 32,
    b'{"input": ' + b'{"a": ' * 10_000 + b"1" + b"}" * 10_000 + b"}",
], ids=["invalid-utf8", "raw-nul-in-string", "nul-bytes", "nested-10000"])
def test_junk_bodies_are_400_and_the_connection_stays_usable(start_app, body):
    service = start_app()
    with connect(service.port, timeout=5) as sock:
        sock.sendall(f"POST {PREVIEW} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status, _, answer = read_response(sock, 5)
        assert status == 400 and body_json(answer)["status"] == "error"
        sock.sendall(b"GET /bmad/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, 5)[0] == 200


def test_oversized_chunk_declared_in_one_chunk_is_413_before_it_is_read(start_app):
    service = start_app({"server": {"max_body_bytes": 1024}})
    status, headers, _, closed = _answer(service.port, f"POST {PREVIEW} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                         f"application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                                         f"{1 << 40:x}\r\n".encode() + b"x" * 100)
    assert status == 413 and closed


# -- hostile path parameters --------------------------------------------------------------------------

HOSTILE = ["%22quoted%22", "'", "..", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "%2e%2e%2f", "%00", "a%00b",
           "x" * 10_240, "1%27%20OR%20%271%27%3D%271", "1;DROP%20TABLE%20events;--", "%ff", "%25", "a%5Cb"]


def _parameterized_routes(service):
    return [route for route in service.app.router.routes if "{" in route.template]


def test_hostile_path_parameters_on_every_route_are_400_or_404_and_add_no_series(start_app, client_for):
    service = start_app({"rate_limits": {"enabled": False}})  # 14 values per route would run into the limits
    client = client_for(service)
    routes = _parameterized_routes(service)
    assert len(routes) >= 10
    seen = []
    for route in routes:
        for value in HOSTILE:
            path = re.sub(r"\{[a-z_]+\}", value, route.template)
            r = client.request(route.method, path, body={} if route.method == "POST" else None)
            seen.append((route.method, path[:80], r.status))
            # two 10 KB parameters make the request line too long: 414
            assert r.status in (400, 404, 414), (route.method, path[:120], r.status, r.body[:200])
    metrics = client.get("/bmad/metrics").body.decode()
    templates = {route.template for route in service.app.router.routes} | {"other"}
    labelled = set(re.findall(r'route="([^"]*)"', metrics))
    assert labelled <= templates, labelled - templates
    for value in HOSTILE:
        assert value not in metrics and "passwd" not in metrics and "DROP" not in metrics
    assert len(seen) == len(routes) * len(HOSTILE)


# -- brute-forced keys --------------------------------------------------------------------------------


def test_failed_keys_are_limited_per_client_then_refill(start_app, client_for):
    clock = FakeClock()
    service = start_app({**KEYS, "rate_limits": {"auth": {"per_minute": 60, "burst": 5}}}, clock=clock)
    c = client_for(service)
    statuses = [c.get("/bmad/tools", headers={"Authorization": f"Bearer guess-{n}"}).status for n in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    r = c.get("/bmad/tools", headers={"Authorization": "Bearer alice-key-123"})
    assert r.status == 429 and r.getheader("Retry-After") == "1"  # locked out before the key is compared
    assert r.json["error"]["type"] == "rate_limited"
    assert c.get("/bmad/tools").status == 401  # no key: nothing guessed, never limited
    assert c.get("/bmad/health").status == 200  # open routes are not behind the lockout
    clock.tick(1.0)
    assert c.get("/bmad/tools", headers={"Authorization": "Bearer alice-key-123"}).status == 200
    metrics = c.get("/bmad/metrics").body.decode()
    assert "bmad_auth_failed_total 6.0" in metrics  # 5 wrong keys + the no-key request
    assert 'bmad_rate_limited_total{class="auth"} 4.0' in metrics
    assert "guess-" not in service.app.logger.text() and "alice-key-123" not in service.app.logger.text()


def test_a_missing_key_never_counts_toward_the_lockout(start_app, client_for):
    service = start_app({**KEYS, "rate_limits": {"auth": {"per_minute": 60, "burst": 2}}}, clock=FakeClock())
    c = client_for(service)
    assert {c.get("/bmad/tools").status for _ in range(10)} == {401}
    assert c.get("/bmad/tools", headers={"Authorization": "Bearer alice-key-123"}).status == 200


# -- CORS ----------------------------------------------------------------------------------------------

ORIGIN = "https://app.example.com"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}


def test_cors_is_off_by_default(start_app, client_for):
    c = client_for(start_app())
    r = c.request("OPTIONS", PREVIEW, headers=PREFLIGHT)
    assert r.status == 405 and r.getheader("Access-Control-Allow-Origin") is None
    r = c.get("/bmad/tools", headers={"Origin": ORIGIN})
    assert r.status == 200 and r.getheader("Access-Control-Allow-Origin") is None and r.getheader("Vary") is None


def test_cors_answers_listed_origins_only(start_app, client_for):
    c = client_for(start_app({**KEYS, "server": {"cors_origins": [ORIGIN]}}))
    r = c.request("OPTIONS", PREVIEW, headers=PREFLIGHT)  # a preflight carries no key
    assert r.status == 200 and r.body == b""
    assert r.getheader("Access-Control-Allow-Origin") == ORIGIN and r.getheader("Vary") == "Origin"
    assert r.getheader("Access-Control-Allow-Methods") == "POST"
    assert "Authorization" in r.getheader("Access-Control-Allow-Headers")
    r = c.request("OPTIONS", "/bmad/tools", headers={**PREFLIGHT, "Access-Control-Request-Method": "DELETE"})
    assert r.status == 200 and r.getheader("Access-Control-Allow-Methods") == "GET, HEAD"
    assert c.request("OPTIONS", "/bmad/nowhere", headers=PREFLIGHT).status == 404
    r = c.request("OPTIONS", PREVIEW, headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert r.status == 405 and r.getheader("Access-Control-Allow-Origin") is None
    r = c.get("/bmad/tools", headers={"Origin": ORIGIN, "Authorization": "Bearer alice-key-123"})
    assert r.status == 200 and r.getheader("Access-Control-Allow-Origin") == ORIGIN
    assert "X-Request-ID" in r.getheader("Access-Control-Expose-Headers")
    r = c.get("/bmad/tools", headers={"Origin": "https://evil.example", "Authorization": "Bearer alice-key-123"})
    assert r.getheader("Access-Control-Allow-Origin") is None and r.getheader("Vary") == "Origin"


@pytest.mark.parametrize("origins", ["https://a.example", ["*"], ["https://a.example/"], ["a.example"], [7]])
def test_bad_cors_origins_stop_startup_naming_the_key(make_config, origins):
    from bmad.app import build_app
    with pytest.raises(ConfigError, match="server.cors_origins"):
        build_app(make_config({"server": {"cors_origins": origins}}), environ={})


# -- security headers ---------------------------------------------------------------------------------


def test_every_kind_of_response_says_nosniff(start_app, client_for):
    service = start_app({"server": {"max_body_bytes": 10}})
    c = client_for(service)
    for r in (c.get("/bmad/health"), c.get("/bmad/tools"), c.get("/bmad/nowhere"), c.request("DELETE", "/bmad/tools"),
              c.get("/bmad/metrics"), c.post(PREVIEW, {"input": "a body over ten bytes"})):
        assert r.getheader("X-Content-Type-Options") == "nosniff", (r.status, r.getheaders())
    with connect(service.port) as sock:
        sock.sendall(b"GET /bmad/health HTTP/9.9\r\nHost: x\r\n\r\n")  # answered before it is parsed
        status, headers, _ = read_response(sock)
        assert status == 505 and headers["x-content-type-options"] == "nosniff"
    r = c.get("/ui/")
    if r.status == 200:  # the UI sets its own set once, not twice
        assert [v for k, v in r.getheaders() if k.lower() == "x-content-type-options"] == ["nosniff"]


def test_config_default_has_no_cors_origins():
    assert load(environ={}, data={}).at("server.cors_origins") == []
