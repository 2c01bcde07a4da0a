"""Shared fixtures: real servers on 127.0.0.1 port 0 and clients for them (helpers live in tests/support.py)."""

import http.client
import json

import pytest

from bmad.app import build_app
from bmad.config import load
from bmad.service import Service
from tests.support import CapturedLogger, FakeClock, eventually  # noqa: F401 (also re-exported for old imports)


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
