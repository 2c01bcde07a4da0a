"""Fuzz target (atheris) for the request parser and JSON body handling.

Each input is one of two shapes, chosen by its first byte:

- raw: the bytes are a whole request as a client would send it (request
  line, headers, body), read by the server's own ``ConnectionHandler`` from
  an in-memory stream, dispatched to a real app and written back;
- body: the bytes are the JSON body of a well-framed POST to one of the
  routes that read a body (chosen by the second byte), so the fuzzer spends
  its time in ``Request.json`` and the handlers' validation.

A finding is any exception that escapes the parser or the app, any 5xx the
gateway answers (the offline provider cannot fail, so a 5xx is a bug) and
any response that is not one well-formed HTTP/1.1 message with an exact
``Content-Length`` (none on a 204 or 304). Rate limits are off so every
input reaches a handler; analytics is on, so recording is exercised too.

Run on demand, outside CI (needs ``pip install atheris``)::

    mkdir -p /tmp/bmad-fuzz-corpus
    nice python tests/fuzz/fuzz_request.py -max_total_time=600 -timeout=10 \
        -dict=tests/fuzz/http.dict /tmp/bmad-fuzz-corpus tests/fuzz/seeds

``-max_total_time`` bounds the run; the first folder collects the inputs
that reached new code (keep it out of the repository; ``seeds/`` is only
read); a crash writes ``crash-<sha1>`` in the current folder with the input
that caused it (``-artifact_prefix=DIR/`` puts it elsewhere).
``python tests/fuzz/fuzz_request.py crash-<sha1>`` replays one input;
``tests/test_fuzz_replay.py`` replays ``seeds/`` and ``regressions/`` (the
inputs of every crash found and fixed) in the normal test run.
"""

import io
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import contextlib  # noqa: E402
import importlib  # noqa: E402

# The standard library is imported before instrumenting, so coverage feedback comes from bmad's own code.
for _name in ("http.client", "http.server", "socketserver", "sqlite3", "ssl", "uuid", "queue", "email.utils"):
    importlib.import_module(_name)

try:
    import atheris
except ImportError:  # replaying inputs (tests/test_fuzz_replay.py) needs no atheris
    atheris = None

with atheris.instrument_imports() if atheris else contextlib.nullcontext():
    from bmad.app import build_app
    from bmad.config import load
    from bmad.errors import HTTPError
    from bmad.ops.logs import JsonLogger
    from bmad.http.server import ConnectionHandler, Server

BODY_ROUTES = (
    "/v1/chat/completions",
    "/bmad/tools/analyst/preview",
    "/bmad/tools/analyst/run",
    "/bmad/tools/no-such-tool/run",
    "/bmad/workflows/greenfield-service/runs",
    "/bmad/runs/1/cancel",
)
STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [^\r\n]*\r\n")
# 501 (an unsupported transfer coding) and 505 (HTTP/2.0) are the client's fault, said in the 5xx range
# because RFC 9110 puts them there.
CLIENT_FAULT_5XX = {501, 505}
# A full workflow queue is a documented 503 (with Retry-After), not a fault.
DOCUMENTED_503_TYPES = (b'"type":"queue_full"',)


class QuietLogger(JsonLogger):
    """Keeps error lines (an unhandled exception is a finding) and drops the rest."""

    def __init__(self):
        super().__init__("error")
        self.errors = []

    def write(self, data):
        self.errors.append(data.decode("utf-8", "replace"))


class MemoryConnection(ConnectionHandler):
    """The server's connection handler reading one request from bytes instead of a socket."""

    def __init__(self, server, data):  # deliberately not calling BaseRequestHandler.__init__: no socket
        self.server = server
        self.connection = None
        self.client_address = ("127.0.0.1", 0)
        self.rfile = io.BufferedReader(io.BytesIO(data))
        self.wfile = io.BytesIO()
        self.served = 0
        self.close_connection = True


def build_server(data_dir):
    """A real app (open mode, offline provider, analytics on, rate limits off) and a Server that is never started."""
    config = load(environ={}, data={"server": {"host": "127.0.0.1", "port": 0, "max_body_bytes": 65536},
                                    "data_dir": data_dir, "log_level": "error",
                                    "rate_limits": {"enabled": False}})
    app = build_app(config, logger=QuietLogger(), environ={})
    return Server(app, "127.0.0.1", 0)


def check_response(raw, request):
    """Raise AssertionError unless ``raw`` is one well-formed response that is not a gateway 5xx."""
    if not raw:
        return  # the client 'went away' mid-request (truncated input): nothing to answer
    m = STATUS_LINE.match(raw)
    assert m, f"malformed status line {raw[:80]!r} for {request[:200]!r}"
    status = int(m.group(1))
    documented = status == 503 and any(t in raw for t in DOCUMENTED_503_TYPES)
    assert status < 500 or status in CLIENT_FAULT_5XX or documented, \
        f"status {status} for {request[:300]!r}: {raw[:600]!r}"
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no end of head in {raw[:200]!r}"
    lengths = re.findall(rb"\r\nContent-Length: ([0-9]+)\r\n", head + b"\r\n")
    chunked = b"\r\nTransfer-Encoding: chunked\r\n" in head + b"\r\n"
    if status in (204, 304):  # RFC 9110 section 8.6: no Content-Length and no body
        assert not lengths and not body, f"a {status} with a length or body: {raw[:300]!r}"
        return
    assert len(lengths) == 1 or chunked, f"no single Content-Length in {head!r}"
    if lengths and not chunked:
        assert int(lengths[0]) == len(body) or request.startswith(b"HEAD "), \
            f"Content-Length {lengths[0]!r} but {len(body)} body bytes for {request[:200]!r}"
    if b"Content-Type: application/json" in head and body and not request.startswith(b"HEAD "):
        json.loads(body)


def serve(server, request):
    """Serve one request through the real handler and return the bytes written."""
    conn = MemoryConnection(server, request)
    try:
        conn._serve_one(None, 0.0, 0.0, False)
    except HTTPError as e:  # never expected: _serve_one answers these itself
        raise AssertionError(f"HTTPError escaped the handler: {e!r} for {request[:200]!r}") from None
    return conn.wfile.getvalue()


def frame_body(route, body):
    return (f"POST {route} HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("ascii") + body


_server = None


def test_one_input(data):
    """The atheris entry point."""
    global _server
    if _server is None:
        _server = build_server(tempfile.mkdtemp(prefix="bmad-fuzz-"))
    if not data:
        return
    if data[0] & 1:
        request = data[1:]
    else:
        route = BODY_ROUTES[(data[1] if len(data) > 1 else 0) % len(BODY_ROUTES)]
        request = frame_body(route, data[2:])
    logger = _server.app.logger
    before = len(logger.errors)
    raw = serve(_server, request)
    check_response(raw, request)
    assert len(logger.errors) == before, f"error logged for {request[:300]!r}: {logger.errors[-1][:2000]}"


def main():
    if atheris is None:
        sys.exit("atheris is not installed: pip install atheris")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
