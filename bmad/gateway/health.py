"""Background health checks of every provider, never on a request's path.

A daemon thread calls each provider's cheapest no-token call (its models
list) when it is due: every ``interval_seconds`` while it passes, and after a
failure again in 5 s, 10 s, 30 s, 60 s, 120 s, then every interval (each step
at most the interval), so a server that starts after the gateway is taken
into use within seconds. A 404 or 405 on the models list means the server is
up and has no such list (many OpenAI-compatible servers): healthy.

The router skips a provider whose last check failed, with two ways back
besides the next check: ``mark_up`` (a live request it sent succeeded: the
provider is up, whatever the check said) and ``try_trial`` (when no other
candidate is left, one live request per failed check goes to it as a trial,
as a half-open circuit breaker lets one through). A provider nobody has
checked yet counts as healthy. Checks run one provider at a time, each
bounded by that provider's timeout.

Methods for the caller: ``start()``, ``stop()``, ``check_all()`` and
``run_due()`` (one round, synchronously: tests and tools call them),
``healthy(name)``, ``listed(name)``, ``next_check(name)``, ``try_trial(name)``,
``release_trial(name)``, ``mark_up(name)``, ``snapshot(name)``,
``generation()``.
"""

import threading
import time

from ..providers.base import ProviderError, scrub

MAX_MODELS = 1000
BACKOFF_SECONDS = (5.0, 10.0, 30.0, 60.0, 120.0)
MIN_WAIT_SECONDS = 0.05
NO_MODELS_LIST = (404, 405)


class _Status:
    __slots__ = ("healthy", "last_check", "last_error", "models", "failures", "next_check", "trial_ready")

    def __init__(self):
        self.healthy = True
        self.last_check = None
        self.last_error = None
        self.models = None
        self.failures = 0  # failed checks in a row
        self.next_check = None  # clock time the thread checks it next; None: at once
        self.trial_ready = False  # one live trial request may go (set by each failed check)


class ProviderHealth:
    """The last health-check result of each provider, its re-check schedule, and the thread that runs it."""

    def __init__(self, providers, *, interval=300.0, clock=time.time, logger=None, on_change=None):
        self.providers = [p for p in providers if p.type != "offline"]
        self.interval = interval
        self.clock = clock
        self.logger = logger
        self.on_change = on_change
        self._status = {p.name: _Status() for p in providers}
        self._generation = 0  # bumped whenever a models list changes (the router's route cache follows it)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def healthy(self, name):
        """False only when the provider's last check failed (and no live request has succeeded since)."""
        status = self._status.get(name)
        return status is None or status.healthy

    def listed(self, name):
        """The model ids the provider's last successful check returned; None when unknown or empty."""
        status = self._status.get(name)
        return status.models if status is not None and status.models else None

    def generation(self):
        """A number that changes whenever a provider's models list does."""
        return self._generation

    def next_check(self, name):
        """Clock time of the provider's next scheduled check (None: as soon as the thread runs)."""
        return self._status[name].next_check

    def backoff(self, failures):
        """Seconds until the re-check after ``failures`` failed checks in a row."""
        step = BACKOFF_SECONDS[failures - 1] if failures <= len(BACKOFF_SECONDS) else self.interval
        return min(step, self.interval) if self.interval > 0 else step

    def snapshot(self, name):
        """``{"healthy", "last_check" (epoch seconds or None), "last_error", "models", "failures", "next_check"}``."""
        status = self._status[name]
        with self._lock:
            return {"healthy": status.healthy, "last_check": status.last_check, "last_error": status.last_error,
                    "models": list(status.models) if status.models is not None else None,
                    "failures": status.failures, "next_check": status.next_check}

    def check(self, provider):
        """Check one provider now and record the result; returns True when it is healthy."""
        try:
            models = provider.check_health()
            error = None
        except ProviderError as e:
            models, error = None, None if e.status in NO_MODELS_LIST else f"{e.kind}: {e.message}"
        except Exception as e:  # a bug in a client must not kill the checker thread
            models, error = None, f"check failed: {type(e).__name__}"
        if error is not None:
            error = scrub(error, provider.spec.secrets)[:300]
        status = self._status[provider.name]
        now = self.clock()
        with self._lock:
            was = status.healthy
            status.healthy = error is None
            status.last_check = now
            status.last_error = error
            status.failures = 0 if error is None else status.failures + 1
            status.next_check = now + (self.interval if error is None else self.backoff(status.failures))
            status.trial_ready = error is not None
            models = tuple(models[:MAX_MODELS]) if models is not None else None
            if error is None and models != status.models:
                status.models = models
                self._generation += 1
        self._changed(provider.name, was, status.healthy, error, "health check")
        return status.healthy

    def try_trial(self, name):
        """Reserve the one live trial request a provider that failed its last check may get; True when granted."""
        status = self._status.get(name)
        if status is None or status.healthy or not status.trial_ready:
            return False
        with self._lock:
            granted, status.trial_ready = status.trial_ready and not status.healthy, False
        return granted

    def release_trial(self, name):
        """A trial ended without telling anything (the request never reached the provider): another may go."""
        status = self._status.get(name)
        if status is not None and not status.healthy:
            with self._lock:
                status.trial_ready = True

    def mark_up(self, name):
        """A live request to the provider succeeded: it is healthy now, whatever its last check said."""
        status = self._status.get(name)
        if status is None or status.healthy:  # the common case, without the lock
            return
        with self._lock:
            was = status.healthy
            status.healthy = True
            status.last_error = None
            status.failures = 0
            status.trial_ready = False
            status.next_check = self.clock() + self.interval
        self._changed(name, was, True, None, "live request")

    def _changed(self, name, was, healthy, error, evidence):
        if was == healthy:
            return
        if self.logger is not None:
            if healthy:
                self.logger.info("provider healthy again", provider=name, evidence=evidence)
            else:
                status = self._status[name]
                self.logger.warning("provider failed its health check", provider=name, error=error,
                                    retry_in_seconds=self.backoff(status.failures))
        if self.on_change is not None:
            self.on_change(name, healthy, error)

    def check_all(self):
        """One round of checks, one provider after another."""
        for provider in self.providers:
            if self._stop.is_set():
                return
            self.check(provider)

    def run_due(self):
        """Check every provider whose check is due; returns the seconds until the next one is."""
        now = self.clock()
        for provider in self.providers:
            if self._stop.is_set():
                break
            due = self._status[provider.name].next_check
            if due is None or due <= now:
                self.check(provider)
        now = self.clock()
        waits = [s.next_check - now for n, s in self._status.items() if s.next_check is not None]
        return max(MIN_WAIT_SECONDS, min(waits, default=self.interval))

    def start(self):
        """Start the background thread (checks at once, then as each provider is due)."""
        if self._thread is not None or not self.providers or self.interval <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="bmad-provider-health", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            wait = self.interval
            try:
                wait = self.run_due()
            except Exception as e:
                if self.logger is not None:
                    self.logger.error("provider health round failed", error=f"{type(e).__name__}: {e}")
            self._stop.wait(min(wait, self.interval))

    def stop(self, timeout=2.0):
        """Stop the thread; a check in progress is abandoned after ``timeout`` (the thread is a daemon)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
