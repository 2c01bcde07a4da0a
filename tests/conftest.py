"""Shared fixtures: real servers on 127.0.0.1 port 0, captured logs, a fake clock."""

import http.client
import json
import threading

import pytest

from bmad.app import build_app
from bmad.config import load
from bmad.ops.logs import JsonLogger
from bmad.service import Service


class CapturedLogger(JsonLogger):
    """A JsonLogger that keeps its lines in memory for assertions."""

    def __init__(self, level="debug"):
        super().__init__(level)
        self.lines = []
        self._lock = threading.Lock()

    def write(self, data):
        with self._lock:
            self.lines.append(data.decode("utf-8"))

    def records(self):
        with self._lock:
            return [json.loads(line) for line in self.lines]

    def text(self):
        with self._lock:
            return "".join(self.lines)


class FakeClock:
    """A clock tests move by hand: ``clock()`` reads it, ``tick(s)`` advances it."""

    def __init__(self, start=1_700_000_000.0):
        self.now = start

    def __call__(self):
        return self.now

    def tick(self, seconds):
        self.now += seconds


class Client:
    """A tiny JSON client on one keep-alive connection (http.client, real sockets)."""

    def __init__(self, service, headers=None):
        self.host = "127.0.0.1"
        self.port = service.port
        self.headers = dict(headers or {})
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def request(self, method, path, body=None, headers=None, raw=None):
        h = dict(self.headers)
        h.update(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        try:
            self.conn.request(method, path, body=data, headers=h)
            resp = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            self.conn.request(method, path, body=data, headers=h)
            resp = self.conn.getresponse()
        payload = resp.read()
        resp.body = payload
        ctype = resp.getheader("Content-Type", "")
        resp.json = json.loads(payload) if payload and ctype.startswith("application/json") else None
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def close(self):
        self.conn.close()


@pytest.fixture
def make_config(tmp_path):
    """``make_config(data=None, environ=None)`` -> a Config on port 0 with a temp data dir."""

    def _make(data=None, environ=None, **overrides):
        tree = {"server": {"host": "127.0.0.1", "port": 0}, "data_dir": str(tmp_path / "data"), "log_level": "debug"}
        for key, value in (data or {}).items():
            if isinstance(value, dict) and isinstance(tree.get(key), dict):
                tree[key].update(value)
            else:
                tree[key] = value
        return load(environ=environ or {}, data=tree, overrides=overrides)

    return _make


@pytest.fixture
def start_app(make_config):
    """``start_app(data=None, environ=None, clock=None)`` -> a started Service; stopped after the test.

    The service's logger is a CapturedLogger (``service.app.logger``).
    """
    services = []

    def _start(data=None, environ=None, clock=None, **build):
        config = make_config(data, environ)
        kwargs = dict(logger=CapturedLogger(), environ=environ or {})
        if clock is not None:
            kwargs["clock"] = clock
        kwargs.update(build)
        service = Service(build_app(config, **kwargs)).start()
        services.append(service)
        return service

    yield _start
    for service in services:
        service.stop(drain_seconds=2)


@pytest.fixture
def client_for():
    """``client_for(service, headers=None)`` -> a Client; closed after the test."""
    clients = []

    def _client(service, headers=None):
        c = Client(service, headers)
        clients.append(c)
        return c

    yield _client
    for c in clients:
        c.close()


def eventually(predicate, timeout=3.0, interval=0.005):
    """Poll ``predicate`` until it is truthy (returns its value) or fail after ``timeout`` seconds.

    For effects that follow a response on another thread (log lines, counters
    updated after the body is written); not a substitute for an injected clock.
    """
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
