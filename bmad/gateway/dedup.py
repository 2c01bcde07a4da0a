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
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
                self.leaders += 1
                leader = True
            else:
                flight.waiters += 1
                leader = False
        if leader:
            return self._lead(key, flight, fn), False
        return self._wait(flight), True

    def _lead(self, key, flight, fn):
        try:
            flight.result = fn()
            return flight.result
        except BaseException as e:
            # KeyboardInterrupt/SystemExit in the leader must still release the waiters
            flight.error = e if isinstance(e, Exception) else InternalError(
                "the identical request this one was waiting for was interrupted")
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    def _wait(self, flight):
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
