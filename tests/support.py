"""Test support without fixtures: a fake clock, captured logs, and the one bounded poll loop.

Standard library (and bmad) only, so benchmarks and the fake upstreams can import it too.
"""

import json
import threading
import time

from bmad.ops.logs import JsonLogger


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


def poll(predicate, timeout=3.0, interval=0.005, ignore=()):
    """Call ``predicate`` until it is truthy; return that value, or its last (falsy) value after ``timeout`` seconds.

    ``ignore``: exception types that mean "not yet" (a server still starting);
    any other exception propagates at once. ``interval`` may be 0 when the
    predicate blocks by itself (a socket read, a long-poll).
    """
    return _poll(predicate, timeout, interval, ignore)[0]


def eventually(predicate, timeout=3.0, interval=0.005, what="the condition", ignore=()):
    """Poll ``predicate`` until it is truthy (returns its value) or fail after ``timeout`` seconds.

    For effects that follow a response on another thread (log lines, counters
    updated after the body is written); not a substitute for an injected clock.
    """
    value, last = _poll(predicate, timeout, interval, ignore)
    if not value:
        raise AssertionError(f"gave up after {timeout} s waiting for {what}; last answer: {last!r}")
    return value


def _poll(predicate, timeout, interval, ignore):
    """(value, last answer or ignored exception) of the one bounded poll loop."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = last = predicate()
        except ignore as e:  # the exception is the answer to report if time runs out
            value, last = None, e
        if value or time.monotonic() > deadline:
            return value, last
        time.sleep(interval)
