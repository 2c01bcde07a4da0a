"""Helpers shared by the provider-router tests: gateway config for fake upstreams, an event log, key scans."""

import threading

UPSTREAM_KEY = "sk-upstream-SECRET-0123456789abcdef"
# Everything the performance layer and analytics would add is off: these tests count upstream calls.
QUIET = {"health_checks": {"interval_seconds": 0.0}, "cache": {"enabled": False},
         "rate_limits": {"enabled": False}, "analytics": {"enabled": False}}


def entry(up, name=None, **extra):
    """A ``providers[]`` entry for a FakeUpstream (short timeouts so fault tests stay fast)."""
    item = {"name": name or up.kind, "type": up.kind, "base_url": up.base_url, "api_key": UPSTREAM_KEY,
            "timeout_seconds": 1.0, "connect_timeout_seconds": 1.0}
    if up.kind == "azure":
        item["deployment"] = "gpt-4o-mini"
    item.update(extra)
    return item


def gateway_config(*providers, **sections):
    """Config data: the given provider entries, with cache, limits, analytics and health checks off."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in QUIET.items()}
    data["providers"] = list(providers)
    data.update(sections)
    return data


class EventLog:
    """Stands in for ``app.events``: keeps every recorded event."""

    enabled = True

    def __init__(self):
        self.events = []
        self._lock = threading.Lock()

    def record(self, type, **fields):
        with self._lock:
            self.events.append((type, fields))

    def of(self, type):
        with self._lock:
            return [fields for t, fields in self.events if t == type]

    def stats(self):
        return {"enabled": True}


def assert_no_secret(service, *texts, secret=UPSTREAM_KEY):
    """No captured log line, and none of ``texts``, holds the upstream key (or a recognisable part of it)."""
    logs = service.app.logger.text()
    for needle in (secret, secret[10:]):
        assert needle not in logs
        for text in texts:
            text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
            assert needle not in text
