"""Whether a shared-state backend is reachable: one gauge, and one log line per outage and per recovery."""

import threading


class BackendHealth:
    """Tracks one backend (``redis``, ``postgres``); ``failed(error)`` and ``ok()`` are cheap to call per request."""

    def __init__(self, name, *, logger, gauge, probe=None):
        self.name = name
        self.probe = probe
        self.logger = logger
        self.gauge = gauge
        self.up = True
        self.reason = None
        self._lock = threading.Lock()
        gauge.set(1, backend=name)

    def ok(self):
        """A call to the backend succeeded."""
        if self.up:
            return
        with self._lock:
            was_down, self.up, self.reason = not self.up, True, None
        if was_down:
            self.gauge.set(1, backend=self.name)
            self.logger.info("shared state backend recovered", backend=self.name)

    def failed(self, error):
        """A call to the backend failed with ``error`` (its message carries no secret)."""
        with self._lock:
            was_up, self.up, self.reason = self.up, False, str(error)[:300]
        if was_up:
            self.gauge.set(0, backend=self.name)
            self.logger.error("shared state backend unreachable", backend=self.name, error=self.reason)

    def check(self):
        """The ``/bmad/health`` check (after a probe of the backend): ``degraded`` with the reason while it is down."""
        if self.probe is not None:
            try:
                self.probe()
            except Exception as e:
                self.failed(e)
            else:
                self.ok()
        if self.up:
            return {"status": "ok", "backend": self.name}
        return {"status": "degraded", "backend": self.name, "reason": self.reason}
