"""A circuit breaker per provider: stop sending requests to one that keeps failing.

closed -> open after ``failure_threshold`` consecutive failures; open ->
half-open once ``recovery_seconds`` have passed, when exactly one trial
request is let through while every other request skips the provider; the
trial's success closes the circuit, its failure opens it again for another
``recovery_seconds``.

The caller asks ``allow()`` before a request (check-and-reserve, under the
lock) and reports the outcome with ``record_success`` / ``record_failure``
(under the lock); the request itself runs with no lock held, so one slow
provider call never serialises the others. A client error (an upstream 4xx
the caller caused) is not a failure: report it as a success, since the
provider answered.

State changes go to the ``on_change(name, old, new)`` listener, called
after the lock is released.
"""

import enum
import threading
import time


class State(enum.Enum):
    """The breaker's states; ``value`` is the name shown in APIs, ``level`` the metric value."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"

    @property
    def level(self):
        """0 closed, 1 half-open, 2 open (the ``bmad_circuit_breaker_state`` gauge)."""
        return {"closed": 0, "half_open": 1, "open": 2}[self.value]


class Permit:
    """Leave to send one request; ``trial`` when it is the half-open probe."""

    __slots__ = ("trial", "generation")

    def __init__(self, trial, generation):
        self.trial = trial
        self.generation = generation


class CircuitBreaker:
    """The breaker of one provider. ``clock`` returns seconds (injected so tests need not wait)."""

    def __init__(self, name, *, failure_threshold=5, recovery_seconds=120.0, clock=time.monotonic,
                 on_change=None):
        self.name = name
        self.failure_threshold = failure_threshold
        self.recovery_seconds = recovery_seconds
        self.clock = clock
        self.on_change = on_change
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_at = None  # when the half-open trial was let through; None when none is out
        # Bumped on every transition, so a result that belongs to an older state
        # (a request let through while closed, finishing after the circuit opened) is ignored.
        self._generation = 0

    @property
    def state(self):
        """The current ``State``."""
        return self._state

    @property
    def consecutive_failures(self):
        """Failures in a row since the last success or transition."""
        return self._failures

    def available(self):
        """True when ``allow()`` would let a request through now (reserves nothing)."""
        with self._lock:
            if self._state is State.CLOSED:
                return True
            if self._state is State.OPEN:
                return self.clock() - self._opened_at >= self.recovery_seconds
            return self._trial_lost()

    def allow(self):
        """Reserve leave to send one request: a ``Permit``, or None while the circuit is open."""
        change = None
        with self._lock:
            if self._state is State.CLOSED:
                return Permit(False, self._generation)
            now = self.clock()
            if self._state is State.OPEN:
                if now - self._opened_at < self.recovery_seconds:
                    return None
                change = self._move(State.HALF_OPEN)
            elif not self._trial_lost():
                return None  # half-open and the trial is still out: everyone else skips
            self._trial_at = now
            permit = Permit(True, self._generation)
        self._notify(change)
        return permit

    def _trial_lost(self):
        # A trial that never reported back (its caller died) must not pin the
        # circuit half-open forever: after a recovery period another may go.
        return self._trial_at is None or self.clock() - self._trial_at >= self.recovery_seconds

    def record_success(self, permit):
        """The request sent under ``permit`` got an answer from the provider."""
        change = None
        with self._lock:
            if permit.generation != self._generation:
                return
            if self._state is State.HALF_OPEN and permit.trial:
                change = self._move(State.CLOSED)
            elif self._state is State.CLOSED:
                self._failures = 0
        self._notify(change)

    def record_failure(self, permit):
        """The request sent under ``permit`` failed in a way that counts against the provider."""
        change = None
        with self._lock:
            if permit.generation != self._generation:
                return
            if self._state is State.HALF_OPEN and permit.trial:
                change = self._move(State.OPEN)
            elif self._state is State.CLOSED:
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    change = self._move(State.OPEN)
        self._notify(change)

    def release(self, permit):
        """The request under ``permit`` ended without a verdict; a trial slot is freed for another."""
        with self._lock:
            if permit.trial and permit.generation == self._generation and self._state is State.HALF_OPEN:
                self._trial_at = None

    def _move(self, new):
        old = self._state
        self._state = new
        self._failures = 0
        self._generation += 1
        self._trial_at = None
        if new is State.OPEN:
            self._opened_at = self.clock()
        return old, new

    def _notify(self, change):
        if change is not None and self.on_change is not None:
            self.on_change(self.name, change[0], change[1])

    def snapshot(self):
        """``{"state", "consecutive_failures", "opened_at"}`` for status pages."""
        with self._lock:
            return {"state": self._state.value, "consecutive_failures": self._failures,
                    "opened_at": self._opened_at if self._state is not State.CLOSED else None}
