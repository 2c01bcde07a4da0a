"""Regression tests for the defects the contract test (schemathesis), the property tests and the
fuzzer (tests/fuzz/fuzz_request.py) found. Each names who found it and what it was."""

from bmad.providers.base import _retry_after
from tests.rawhttp import exchange

CHAT = "/v1/chat/completions"


def _chat_body(**extra):
    return {"model": "bmad-default", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_unhashable_message_role_is_a_400_not_a_500(start_app, client_for):
    """schemathesis: {"role": {}} reached ``role in frozenset`` and raised TypeError (500)."""
    client = client_for(start_app())
    for role in ({}, [], ["user"]):
        resp = client.post(CHAT, {"model": "bmad-default", "messages": [{"role": role, "content": None}]})
        assert resp.status == 400, resp.body
        assert resp.json["error"]["param"] == "messages[0].role"


def test_integral_float_counts_as_an_integer(start_app, client_for):
    """schemathesis: "n": 3.0 is the JSON integer 3 (JSON Schema agrees) but was refused with 400."""
    client = client_for(start_app())
    assert client.post(CHAT, _chat_body(max_tokens=16.0, n=1.0)).status == 200
    assert client.post(CHAT, _chat_body(max_tokens=16.5)).status == 400


def test_tool_run_refuses_stream_zero(start_app, client_for):
    """schemathesis: "stream": 0 passed ``not in (None, False)`` because 0 == False."""
    client = client_for(start_app())
    body = {"input": "an idea"}
    assert client.post("/bmad/tools/analyst/run", body).status == 200  # now cached
    for stream in (0, 0.0, True, "no"):
        resp = client.post("/bmad/tools/analyst/run", {**body, "stream": stream})
        assert resp.status == 400 and resp.json["error"]["message"].startswith("tool runs do not stream"), stream


def test_non_finite_json_numbers_are_a_400(start_app):
    """atheris: 1e9999 parsed to inf and the cache key's strict json.dumps raised (500); NaN too."""
    service = start_app()
    for number in (b"1e9999", b"-1e9999", b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"model":"bmad-default","messages":[{"role":"user","content":"hi"}],"temperature":' + number + b"}"
        status, _, answer = exchange(service.port, b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: t\r\n"
                                     b"Content-Type: application/json\r\nContent-Length: "
                                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert status == 400, (number, answer)
        assert b"not valid JSON" in answer


def test_non_ascii_digits_in_run_queries_are_a_400(start_app, client_for):
    """Found while writing the contract: str.isdigit() takes '\u00b2', int() does not (500)."""
    client = client_for(start_app())
    for query, field in (("limit=%C2%B2", "limit"), ("cursor=%C2%B2", "cursor"), ("limit=%D9%A3", "limit")):
        resp = client.get(f"/bmad/runs?{query}")
        assert resp.status == 400 and f"'{field}'" in resp.json["error"]["message"], (query, resp.body)
    for wait in ("%D9%A3", "1_0", "inf", "nan"):
        resp = client.get(f"/bmad/runs/run_nope?wait={wait}")
        assert resp.status in (400, 404), resp.body
    assert client.get("/bmad/runs?limit=5&cursor=12").status == 200


def test_upstream_retry_after_with_non_ascii_digit_is_ignored():
    """A hostile upstream's 'Retry-After: \u00b2' (latin-1 0xB2) passed isdigit() and float() raised."""
    assert _retry_after("\u00b2") is None
    assert _retry_after("7") == 7.0


def test_lone_surrogate_escapes_in_a_body_are_a_400(start_app):
    """atheris: {"\\ud800": ""} made the 400 naming the field unencodable as UTF-8; the error escaped
    dispatch and the connection closed with no answer. The same held for any echoed string."""
    service = start_app()
    cases = [("/bmad/workflows/greenfield-service/runs", b'{"\\ud800":""}'),
             (CHAT, b'{"model":"x\\udfff","messages":[{"role":"user","content":"hi"}]}'),
             ("/bmad/tools/analyst/preview", b'{"input":{"\\uDBFF":"x"}}')]
    for path, body in cases:
        status, _, answer = exchange(service.port, f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: "
                                     f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        assert status == 400 and b"lone surrogate" in answer, (path, answer)
    paired = b'{"model":"bmad-default","messages":[{"role":"user","content":"\\ud83d\\ude00"}]}'
    status, _, _ = exchange(service.port, f"POST {CHAT} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
                            f"\r\nContent-Length: {len(paired)}\r\n\r\n".encode() + paired)
    assert status == 200  # a surrogate pair is one character, not an error


def test_dumps_never_raises_on_a_lone_surrogate():
    """Defence in depth: an error message that echoes one still encodes (as a \\u escape)."""
    import json
    from bmad.http.request import dumps
    body = dumps({"message": "unknown field '\ud800'", "ok": "\u00e9"})
    assert json.loads(body) == {"message": "unknown field '\ud800'", "ok": "\u00e9"}
    body.decode("utf-8")
