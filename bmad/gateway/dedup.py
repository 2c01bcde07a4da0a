"""Request de-duplication (single flight): identical concurrent calls share one execution.

The first caller with a key is the leader and runs the function; callers
that arrive with the same key while it runs wait for its outcome and get a
copy of its result, or its error. The lock guards only the table of flights;
the function itself runs outside it, and waiters block on their flight's
``Event``, never on the lock.

Methods for the caller: ``do(key, fn)`` -> ``(result, coalesced)``, ``stats()``.
"""

import copy
import threading

from ..errors import GatewayTimeout, InternalError
from ..providers.cancel import Cancelled

IMMUTABLE = (bytes, str, int, float, bool, type(None))


class _Flight:
    __slots__ = ("done", "result", "error", "waiters")

    def __init__(self):
        self.done = threading.Event()
        self.result = None
        self.error = None
        self.waiters = 0


def _copy_error(error):
    """A copy of ``error`` to raise in another thread (its traceback is per raise), else the original."""
    try:
        clone = copy.copy(error)
    except Exception:
        return error
    return clone if type(clone) is type(error) else error


class SingleFlight:
    """Coalesces concurrent calls that share a key into one call.

    ``timeout`` bounds how long a waiter waits for the leader (use the
    provider timeout: the leader cannot legitimately take longer); ``copier``
    makes each waiter's private copy of a mutable result.
    """

    def __init__(self, *, timeout=60.0, copier=copy.deepcopy, coalesced_counter=None):
        self.timeout = timeout
        self.copier = copier
        self.coalesced_counter = coalesced_counter
        self._flights = {}
        self._lock = threading.Lock()
        self.coalesced = 0
        self.leaders = 0
        self.timeouts = 0

    def do(self, key, fn):
        """Run ``fn()`` once for all concurrent callers with ``key``.

        Returns ``(result, coalesced)``; ``coalesced`` is True for callers that
        got the leader's result. Raises the leader's error (a copy) for every
        waiter, and a 504 ``GatewayTimeout`` to a waiter whose leader took
        longer than ``timeout``.
        """
        flight, leader = self.join(key)
        if not leader:
            return self.wait(flight), True
        try:
            result = fn()
        except BaseException as e:
            self.land(key, flight, None, e)
            raise
        self.land(key, flight, result, None)
        return result, False

    def join(self, key):
        """``(flight, leader)``: lead a new flight for ``key``, or join the one in the air."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
                self.leaders += 1
                return flight, True
            flight.waiters += 1
            return flight, False

    def lead(self, key):
        """A new flight for ``key`` led by the caller, or None when one is in the air already (no joining)."""
        with self._lock:
            if key in self._flights:
                return None
            flight = self._flights[key] = _Flight()
            self.leaders += 1
            return flight

    def land(self, key, flight, result, error):
        """The leader's outcome: release everyone waiting on ``flight``."""
        if error is not None:
            # KeyboardInterrupt/SystemExit in the leader must still release the waiters
            flight.error = error if isinstance(error, Exception) else InternalError(
                "the identical request this one was waiting for was interrupted")
        else:
            flight.result = result
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight.done.set()

    def wait(self, flight):
        """The leader's result (a private copy), or its error raised; 504 after ``timeout``."""
        if not flight.done.wait(self.timeout):
            with self._lock:
                self.timeouts += 1
            raise GatewayTimeout(f"an identical request in flight did not finish within {self.timeout:g} s",
                                 type="dedup_timeout")
        with self._lock:
            self.coalesced += 1
        if self.coalesced_counter is not None:
            self.coalesced_counter.inc()
        if flight.error is not None:
            raise _copy_error(flight.error)
        result = flight.result
        return result if isinstance(result, IMMUTABLE) else self.copier(result)

    def stats(self):
        """``coalesced`` (waiters served by a leader), ``in_flight`` (running leaders), ``waiting`` (callers
        waiting on them now), ``leaders``, ``timeouts``."""
        with self._lock:
            return {"coalesced": self.coalesced, "in_flight": len(self._flights),
                    "waiting": sum(f.waiters for f in self._flights.values()), "leaders": self.leaders,
                    "timeouts": self.timeouts}


class DedupPlugin:
    """The pipeline plugin: identical concurrent non-streamed calls (same cache key) share one upstream call.

    Followers get ``X-Dedup: coalesced`` and a copy of the leader's answer, or its error.
    """

    name = "dedup"

    def __init__(self, flights):
        self.flights = flights

    def pre(self, call):
        """Lead the flight of this call's key, or wait for its leader."""
        key = call.state.get("cache_key")
        if key is None or call.chat.stream:
            return None
        if call.chat.cancel is not None:
            # A call its caller may abandon (a workflow step) never waits on another's: its cancel must stop
            # its own upstream call, and no one else's cancel may end it.
            flight = self.flights.lead(key)
            if flight is not None:
                call.state["flight"] = flight
            return None
        flight, leader = self.flights.join(key)
        if leader:
            call.state["flight"] = flight
            return None
        try:
            result = self.flights.wait(flight)
        except Cancelled:
            return None  # the leader's caller gave up, which is no answer for this one: make our own call
        call.state["coalesced"] = True
        call.headers["X-Dedup"] = "coalesced"
        return result

    def post(self, call, result, error):
        """Release the followers with the leader's outcome."""
        flight = call.state.get("flight")
        if flight is not None:
            self.flights.land(call.state["cache_key"], flight, result, error)
