"""Background health checks of every provider, never on a request's path.

A daemon thread calls each provider's cheapest no-token call (its models
list) every ``interval_seconds``; the router skips a provider whose last
check failed. A provider nobody has checked yet counts as healthy. Checks
run one provider at a time, each bounded by that provider's timeout.

Methods for the caller: ``start()``, ``stop()``, ``check_all()`` (one round,
synchronously: tests and tools call it), ``healthy(name)``, ``snapshot(name)``.
"""

import threading
import time

from ..providers.base import ProviderError, scrub

MAX_MODELS = 1000


class _Status:
    __slots__ = ("healthy", "last_check", "last_error", "models")

    def __init__(self):
        self.healthy = True
        self.last_check = None
        self.last_error = None
        self.models = None


class ProviderHealth:
    """The last health-check result of each provider, and the thread that refreshes them."""

    def __init__(self, providers, *, interval=300.0, clock=time.time, logger=None, on_change=None):
        self.providers = [p for p in providers if p.type != "offline"]
        self.interval = interval
        self.clock = clock
        self.logger = logger
        self.on_change = on_change
        self._status = {p.name: _Status() for p in providers}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def healthy(self, name):
        """False only when the provider's last check failed."""
        status = self._status.get(name)
        return status is None or status.healthy

    def snapshot(self, name):
        """``{"healthy", "last_check" (epoch seconds or None), "last_error", "models"}``."""
        status = self._status[name]
        with self._lock:
            return {"healthy": status.healthy, "last_check": status.last_check, "last_error": status.last_error,
                    "models": list(status.models) if status.models is not None else None}

    def check(self, provider):
        """Check one provider now and record the result; returns True when it is healthy."""
        try:
            models = provider.check_health()
            error = None
        except ProviderError as e:
            models, error = None, f"{e.kind}: {e.message}"
        except Exception as e:  # a bug in a client must not kill the checker thread
            models, error = None, f"check failed: {type(e).__name__}"
        if error is not None:
            error = scrub(error, provider.spec.secrets)[:300]
        status = self._status[provider.name]
        with self._lock:
            was = status.healthy
            status.healthy = error is None
            status.last_check = self.clock()
            status.last_error = error
            if models is not None:
                status.models = tuple(models[:MAX_MODELS])
        if was != status.healthy:
            if self.logger is not None:
                if status.healthy:
                    self.logger.info("provider healthy again", provider=provider.name)
                else:
                    self.logger.warning("provider failed its health check", provider=provider.name, error=error)
            if self.on_change is not None:
                self.on_change(provider.name, status.healthy, error)
        return status.healthy

    def check_all(self):
        """One round of checks, one provider after another."""
        for provider in self.providers:
            if self._stop.is_set():
                return
            self.check(provider)

    def start(self):
        """Start the background thread (checks at once, then every ``interval`` seconds)."""
        if self._thread is not None or not self.providers or self.interval <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="bmad-provider-health", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.check_all()
            except Exception as e:
                if self.logger is not None:
                    self.logger.error("provider health round failed", error=f"{type(e).__name__}: {e}")
            self._stop.wait(self.interval)

    def stop(self, timeout=2.0):
        """Stop the thread; a check in progress is abandoned after ``timeout`` (the thread is a daemon)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
