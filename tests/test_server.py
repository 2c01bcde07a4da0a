"""The HTTP server over real sockets: framing, errors, keep-alive, limits."""

import json
import re
import socket
import threading

import pytest

from bmad.errors import Forbidden
from tests.rawhttp import body_json, connect, exchange, is_closed, read_response
from tests.support import eventually

PREVIEW = "/bmad/tools/analyst/preview"


def post_raw(port, path, body, headers=""):
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}"
    return exchange(port, head.encode() + b"\r\n" + body)


def assert_error(status, headers, body, code, etype=None):
    assert status == code, body
    assert headers["content-type"] == "application/json"
    doc = body_json(body)
    assert doc["status"] == "error"
    assert doc["error"]["request_id"] == headers["x-request-id"]
    if etype:
        assert doc["error"]["type"] == etype
    return doc["error"]["message"]


def test_health_has_standard_headers(start_app, client_for):
    service = start_app()
    r = client_for(service).get("/bmad/health")
    assert r.status == 200
    assert r.json["status"] == "healthy" and r.json["version"] == "2.0.0"
    assert isinstance(r.json["uptime_seconds"], float) and isinstance(r.json["checks"], dict)
    assert r.getheader("Content-Type") == "application/json"
    assert re.fullmatch(r"\d+\.\d{3}ms", r.getheader("X-Response-Time"))
    assert int(r.getheader("Content-Length")) == len(r.body)
    assert r.getheader("X-Request-ID")


def test_request_id_is_echoed_only_when_well_formed(start_app, client_for):
    c = client_for(start_app())
    assert c.get("/bmad/health", headers={"X-Request-ID": "abc.DEF_1:2-3"}).getheader("X-Request-ID") == "abc.DEF_1:2-3"
    for bad in ("has space", "x" * 129, "semi;colon"):
        rid = c.get("/bmad/health", headers={"X-Request-ID": bad}).getheader("X-Request-ID")
        assert rid != bad and re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", rid)


def test_two_requests_on_one_keep_alive_connection(start_app):
    service = start_app()
    with connect(service.port) as sock:
        for _ in range(2):
            sock.sendall(b"GET /bmad/health HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = read_response(sock)
            assert status == 200 and body_json(body)["status"] == "healthy"
            assert headers.get("connection") != "close"
    assert service.server.open_connections <= 1


def test_head_works_wherever_get_does(start_app):
    service = start_app()
    with connect(service.port) as sock:
        sock.sendall(b"GET /bmad/tools HTTP/1.1\r\nHost: x\r\n\r\n")
        _, get_headers, get_body = read_response(sock)
        sock.sendall(b"HEAD /bmad/tools HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(3)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, extra = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert f"Content-Length: {len(get_body)}".encode() in head
        assert extra == b""
        # the connection is still usable: the HEAD sent no body
        sock.sendall(b"GET /bmad/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200


def test_unknown_path_is_404_json(start_app):
    status, headers, body = exchange(start_app().port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert "/nope" in assert_error(status, headers, body, 404, "not_found")


@pytest.mark.parametrize("method", ["PATCH", "QUERY", "FOO", "DELETE", "PUT", "POST"])
def test_wrong_method_is_405_with_allow(start_app, method):
    status, headers, body = exchange(start_app().port, f"{method} /bmad/tools HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
    assert_error(status, headers, body, 405, "method_not_allowed")
    assert headers["allow"] == "GET, HEAD"


def test_405_lists_post_for_a_post_route(start_app):
    status, headers, body = exchange(start_app().port, f"GET {PREVIEW} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 405 and headers["allow"] == "POST"


def test_unknown_tool_is_404_naming_it(start_app, client_for):
    c = client_for(start_app())
    r = c.get("/bmad/tools/no-such-tool")
    assert r.status == 404 and "no-such-tool" in r.json["error"]["message"]
    r = c.get("/bmad/workflows/no-such-flow")
    assert r.status == 404 and "no-such-flow" in r.json["error"]["message"]


def test_malformed_json_is_400(start_app):
    status, headers, body = post_raw(start_app().port, PREVIEW, b"{not json",
                                     "Content-Type: application/json\r\nContent-Length: 9\r\n")
    assert "not valid JSON" in assert_error(status, headers, body, 400)


def test_json_that_is_not_an_object_is_400(start_app, client_for):
    r = client_for(start_app()).request("POST", PREVIEW, raw=b"[1,2]", headers={"Content-Type": "application/json"})
    assert r.status == 400 and "object" in r.json["error"]["message"]


def test_deeply_nested_json_is_400_not_500(start_app, client_for):
    c = client_for(start_app())
    for depth in (100, 100_000):
        raw = b"{\"input\":" + b"[" * depth + b"]" * depth + b"}"
        r = c.request("POST", PREVIEW, raw=raw, headers={"Content-Type": "application/json"})
        assert r.status in (400, 413), r.body
        assert r.json["status"] == "error"


def test_missing_required_input_names_it(start_app, client_for):
    r = client_for(start_app()).post(PREVIEW, {"input": {}})
    assert r.status == 400 and "idea" in r.json["error"]["message"]


def test_unknown_input_field_is_named(start_app, client_for):
    r = client_for(start_app()).post(PREVIEW, {"input": {"idea": "x", "colour": "red"}})
    assert r.status == 400 and "input.colour" in r.json["error"]["message"]


def test_post_without_length_is_411(start_app):
    status, headers, body = post_raw(start_app().port, PREVIEW, b"", "Content-Type: application/json\r\n")
    assert_error(status, headers, body, 411, "length_required")


def test_body_over_limit_is_413_before_reading(start_app):
    service = start_app({"server": {"max_body_bytes": 1000}})
    with connect(service.port) as sock:
        # Only the head is sent: the server must answer without waiting for the body.
        sock.sendall(f"POST {PREVIEW} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 5000000\r\n\r\n".encode())
        status, headers, body = read_response(sock)
        assert_error(status, headers, body, 413, "payload_too_large")
        assert headers["connection"] == "close"


def test_chunked_body_over_limit_is_413(start_app):
    service = start_app({"server": {"max_body_bytes": 100}})
    chunk = b"x" * 200
    status, headers, body = post_raw(service.port, PREVIEW, b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk),
                                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n")
    assert_error(status, headers, body, 413)


def test_chunked_json_body_is_accepted(start_app):
    payload = json.dumps({"input": "a chunked idea"}).encode()
    status, _, body = post_raw(start_app().port, PREVIEW, b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload),
                               "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n")
    assert status == 200 and "a chunked idea" in body_json(body)["messages"][1]["content"]


def test_expect_100_continue(start_app):
    payload = json.dumps({"input": "x"}).encode()
    with connect(start_app().port) as sock:
        sock.sendall(f"POST {PREVIEW} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(payload)}\r\nExpect: 100-continue\r\n\r\n".encode())
        assert sock.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(payload)
        assert read_response(sock)[0] == 200


def test_non_json_post_is_415(start_app):
    status, headers, body = post_raw(start_app().port, PREVIEW, b"idea=x",
                                     "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 6\r\n")
    assert_error(status, headers, body, 415, "unsupported_media_type")


def test_headers_too_large_is_431(start_app):
    service = start_app({"server": {"max_header_bytes": 4096}})
    status, headers, body = exchange(service.port, b"GET /bmad/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
    assert_error(status, headers, body, 431, "headers_too_large")


def test_too_many_headers_is_431(start_app):
    many = "".join(f"X-H{i}: v\r\n" for i in range(150))
    status, headers, body = exchange(start_app().port, f"GET /bmad/health HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode())
    assert_error(status, headers, body, 431)


@pytest.mark.parametrize("head", [
    "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    "Content-Length: 5\r\nContent-Length: 6\r\n",
    "Content-Length: 5\r\nContent-Length: 5\r\n",
    "Content-Length: -1\r\n",
    "Content-Length: 1e3\r\n",
    "Transfer-Encoding: chunked, identity\r\n",
    " X-Folded: yes\r\n",
    "Bad Header: x\r\n",
])
def test_smuggling_shapes_get_400_and_close(start_app, head):
    service = start_app()
    with connect(service.port) as sock:
        sock.sendall(f"POST {PREVIEW} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{head}\r\nhello".encode())
        status, headers, body = read_response(sock)
        assert_error(status, headers, body, 400)
        assert headers["connection"] == "close"
        assert is_closed(sock)


@pytest.mark.parametrize("line, code", [
    (b"GET /bmad/health HTTP/2.0\r\n", 505),
    (b"GET /bmad/health\r\n", 400),
    (b"G\x00T /bmad/health HTTP/1.1\r\n", 400),
    (b"GET bmad/health HTTP/1.1\r\n", 400),
    (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n", 414),
])
def test_bad_request_lines(start_app, line, code):
    status, headers, body = exchange(start_app().port, line + b"Host: x\r\n\r\n")
    assert_error(status, headers, body, code)


def test_invalid_utf8_in_path_parameter_is_400(start_app, client_for):
    r = client_for(start_app()).get("/bmad/tools/%ff%fe")
    assert r.status == 400 and "tool_id" in r.json["error"]["message"]


@pytest.mark.parametrize("param", ["..%2F..%2Fetc", "%00", "x" * 300, "'%20OR%201=1--", "%2e%2e"])
def test_hostile_path_parameters_are_4xx(start_app, client_for, param):
    r = client_for(start_app()).get(f"/bmad/tools/{param}")
    assert r.status in (400, 404) and r.json["status"] == "error"


def test_unexpected_exception_is_500_with_only_the_request_id(start_app, client_for):
    service = start_app()

    def explode(req):
        raise RuntimeError("secret internals")

    service.app.router.get("/bmad/test-explode", explode)
    r = client_for(service).get("/bmad/test-explode")
    assert r.status == 500 and r.json["error"]["type"] == "internal_error"
    assert "secret internals" not in r.body.decode()
    rid = r.getheader("X-Request-ID")
    assert rid in r.json["error"]["message"]
    logged = [rec for rec in service.app.logger.records() if rec["msg"] == "unhandled exception"]
    assert logged and logged[0]["request_id"] == rid and "secret internals" in logged[0]["error"]


def test_forbidden_is_403(start_app, client_for):
    service = start_app({"auth": {"api_keys": [{"key": "k-user", "user": "bob"}]}})

    def admin_only(req):
        raise Forbidden("no")

    service.app.router.get("/bmad/test-admin", lambda req: {"ok": True}, auth="admin")
    r = client_for(service, {"Authorization": "Bearer k-user"}).get("/bmad/test-admin")
    assert r.status == 403 and r.json["error"]["type"] == "forbidden"


def test_every_request_is_logged_as_one_json_line(start_app, client_for):
    service = start_app()
    c = client_for(service)
    c.get("/bmad/tools?secret_token=abc", headers={"X-User-ID": "carol"})
    lines = eventually(lambda: [r for r in service.app.logger.records() if r["msg"] == "request"])
    assert len(lines) == 1
    rec = lines[0]
    assert {"ts", "level", "request_id", "method", "path", "status", "duration_ms", "user"} <= set(rec)
    assert rec["path"] == "/bmad/tools" and rec["user"] == "carol" and rec["status"] == 200
    assert "abc" not in service.app.logger.text()


def test_connection_cap_answers_503_when_every_slot_is_busy(start_app):
    service = start_app({"server": {"max_connections": 2}})
    release = threading.Event()
    entered = threading.Semaphore(0)

    def slow(req):
        entered.release()
        release.wait(5)
        return {"ok": True}

    service.app.router.get("/bmad/test-slow", slow)
    socks = [connect(service.port) for _ in range(2)]
    try:
        for s in socks:
            s.sendall(b"GET /bmad/test-slow HTTP/1.1\r\nHost: x\r\n\r\n")
        assert entered.acquire(timeout=5) and entered.acquire(timeout=5)
        status, headers, body = exchange(service.port, b"GET /bmad/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 503 and body_json(body)["error"]["type"] == "too_many_connections"
        assert headers["x-request-id"]
    finally:
        release.set()
        for s in socks:
            assert read_response(s)[0] == 200
            s.close()


def test_idle_connection_is_evicted_for_a_new_one_at_the_cap(start_app):
    service = start_app({"server": {"max_connections": 2}})
    idle = [connect(service.port) for _ in range(2)]
    try:
        status, _, _ = exchange(service.port, b"GET /bmad/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200
    finally:
        for s in idle:
            s.close()


def test_slow_header_sender_is_cut_at_the_header_timeout(start_app):
    service = start_app({"server": {"header_timeout_seconds": 0.5}})
    with connect(service.port) as sock:
        sock.sendall(b"GET /bmad/health HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
        assert is_closed(sock, timeout=3)


def test_idle_keep_alive_is_closed_after_keepalive_seconds(start_app):
    service = start_app({"server": {"keepalive_seconds": 0.5}})
    with connect(service.port) as sock:
        sock.sendall(b"GET /bmad/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
        assert is_closed(sock, timeout=3)


def test_http10_closes_unless_keep_alive(start_app):
    service = start_app()
    with connect(service.port) as sock:
        sock.sendall(b"GET /bmad/health HTTP/1.0\r\n\r\n")
        status, headers, _ = read_response(sock)
        assert status == 200 and headers["connection"] == "close"
        assert is_closed(sock)


def test_draining_answers_503_on_open_connections(start_app):
    service = start_app()
    with connect(service.port) as sock:
        sock.sendall(b"GET /bmad/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
        service.server.draining = True
        sock.sendall(b"GET /bmad/health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = read_response(sock)
        assert status == 503 and body_json(body)["status"] == "draining"
        assert headers["connection"] == "close"
        service.server.draining = False


def test_listen_backlog_is_at_least_128(start_app):
    service = start_app()
    assert service.server.request_queue_size >= 128


def test_304_and_204_carry_no_content_length(start_app):
    from bmad.http.request import Response
    service = start_app()
    service.app.router.get("/bmad/test-304", lambda req: Response(304, b"ignored", {"ETag": '"x"'}))
    with connect(service.port) as sock:
        sock.sendall(b"GET /bmad/test-304 HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(3)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 304") and b"content-length" not in head.lower() and rest == b""
        sock.sendall(b"GET /bmad/health HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection stays usable
        assert read_response(sock)[0] == 200
