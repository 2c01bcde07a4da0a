"""Per-route request statistics over a sliding window, in bounded memory.

The window (5 minutes) is read from a ring of fixed slots (10 seconds each)
that reaches back 15 minutes, the span of ``history()``. A slot
keeps, per route, a count, the sum of durations, the error count and a
sparse log-scale histogram of durations (buckets 2^(1/4) apart, so a
percentile read from it is within about 10% of the true value). A slot is
reset when the ring comes round to it again, so memory is bounded by
slots x routes x buckets whatever the traffic.

Methods for the caller: ``record(route, duration_ms, status)``, ``snapshot()``,
``summary()``, ``history()``.
"""

import math
import threading
import time

WINDOW_SECONDS = 300
HISTORY_SECONDS = 900
POINT_SECONDS = 30
SLOT_SECONDS = 10
MIN_MS = 0.01
RATIO = 2 ** 0.25
BUCKETS = 100  # MIN_MS * RATIO ** 100 is about 335 s; slower requests share the last bucket
MAX_ROUTES = 256
OTHER = "other"
_LOG_RATIO = math.log(RATIO)


def bucket_of(ms):
    """The histogram bucket index for a duration: bucket i holds (MIN*R^(i-1), MIN*R^i]."""
    if ms <= MIN_MS:
        return 0
    return min(BUCKETS - 1, math.ceil(math.log(ms / MIN_MS) / _LOG_RATIO - 1e-9))


def bucket_value(index):
    """A representative duration for bucket ``index``: the geometric middle of its bounds."""
    if index == 0:
        return MIN_MS
    return MIN_MS * RATIO ** (index - 0.5)


class _Series:
    """Count, sum, errors, extremes and a sparse histogram for one route in one slot (or a merge of them)."""

    __slots__ = ("count", "sum_ms", "errors", "min_ms", "max_ms", "hist")

    def __init__(self):
        self.count = 0
        self.sum_ms = 0.0
        self.errors = 0
        self.min_ms = math.inf
        self.max_ms = 0.0
        self.hist = {}

    def add(self, ms, error):
        self.count += 1
        self.sum_ms += ms
        self.errors += error
        self.min_ms = min(self.min_ms, ms)
        self.max_ms = max(self.max_ms, ms)
        index = bucket_of(ms)
        self.hist[index] = self.hist.get(index, 0) + 1

    def merge(self, other):
        self.count += other.count
        self.sum_ms += other.sum_ms
        self.errors += other.errors
        self.min_ms = min(self.min_ms, other.min_ms)
        self.max_ms = max(self.max_ms, other.max_ms)
        for index, n in other.hist.items():
            self.hist[index] = self.hist.get(index, 0) + n

    def percentile(self, q):
        """The ``q`` quantile (0..1) estimated from the histogram, clamped to the observed range."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.hist):
            seen += self.hist[index]
            if seen >= rank:
                return min(self.max_ms, max(self.min_ms, bucket_value(index)))
        return self.max_ms

    def avg(self):
        return self.sum_ms / self.count if self.count else 0.0


class PerfStats:
    """Request counts, rates and latency percentiles per route over the last ``window_seconds``.

    An error is a response with status 500 or above (the service failed),
    or 499 (the client went away before the answer was written).
    """

    def __init__(self, *, clock=time.monotonic, window_seconds=WINDOW_SECONDS, slot_seconds=SLOT_SECONDS,
                 max_routes=MAX_ROUTES, history_seconds=HISTORY_SECONDS, point_seconds=POINT_SECONDS):
        self.clock = clock
        self.slot_seconds = slot_seconds
        self.window_slots = max(1, int(window_seconds // slot_seconds))
        self.window_seconds = self.window_slots * slot_seconds
        self.slots = max(self.window_slots, int(history_seconds // slot_seconds))
        self.history_seconds = self.slots * slot_seconds
        self.point_slots = max(1, int(point_seconds // slot_seconds))
        self.max_routes = max_routes
        self.started = clock()
        self.total_requests = 0
        self._ring = [(-1, {}) for _ in range(self.slots)]
        self._totals = [(-1, None) for _ in range(self.slots)]  # each slot's routes merged, for history()
        self._routes = set()
        self._lock = threading.Lock()

    def record(self, route, duration_ms, status):
        """Count one finished request of ``route`` that took ``duration_ms`` and answered ``status``."""
        error = 1 if status >= 500 or status == 499 else 0
        epoch = int(self.clock() // self.slot_seconds)
        position = epoch % self.slots
        with self._lock:
            self.total_requests += 1
            if route not in self._routes:
                if len(self._routes) >= self.max_routes:
                    route = OTHER
                self._routes.add(route)
            slot_epoch, series = self._ring[position]
            if slot_epoch != epoch:
                series = {}
                self._ring[position] = (epoch, series)
                self._totals[position] = (epoch, _Series())
            entry = series.get(route)
            if entry is None:
                entry = series[route] = _Series()
            entry.add(duration_ms, error)
            self._totals[position][1].add(duration_ms, error)

    def _window(self):
        """Merged per-route series of the live slots (copied under the lock, merged outside it)."""
        now = self.clock()
        oldest = int(now // self.slot_seconds) - self.window_slots + 1
        with self._lock:
            live = [list(series.items()) for epoch, series in self._ring if epoch >= oldest]
            copies = [[(route, _copy(s)) for route, s in items] for items in live]
        merged = {}
        for items in copies:
            for route, s in items:
                target = merged.get(route)
                if target is None:
                    merged[route] = s
                else:
                    target.merge(s)
        return now, merged

    def snapshot(self):
        """The ``/bmad/performance`` request stats: totals, rate, avg and percentiles, and ``by_route``."""
        now, merged = self._window()
        overall = _Series()
        by_route = {}
        for route in sorted(merged):
            s = merged[route]
            overall.merge(s)
            by_route[route] = {"count": s.count, "avg_ms": round(s.avg(), 3),
                               "p95_ms": round(s.percentile(0.95), 3), "errors": s.errors}
        covered = min(self.window_seconds, max(0.0, now - self.started))
        minutes = max(1.0, covered / 60.0)
        return {"total_requests": self.total_requests, "window_seconds": self.window_seconds,
                "window_requests": overall.count,
                "requests_per_minute": round(overall.count / minutes, 2),
                "avg_response_ms": round(overall.avg(), 3),
                "p50_ms": round(overall.percentile(0.50), 3),
                "p95_ms": round(overall.percentile(0.95), 3),
                "p99_ms": round(overall.percentile(0.99), 3),
                "by_route": by_route}

    def history(self):
        """The last ``history_seconds`` as points ``point_seconds`` apart, oldest first, from the first one
        after start: ``{t, requests, requests_per_minute, p50_ms, p95_ms, error_rate}`` (``t`` = the
        clock at the point's start; percentiles None for a point without requests)."""
        now = self.clock()
        current = int(now // self.slot_seconds)
        first = max(current - self.slots + 1, int(self.started // self.slot_seconds))
        first -= first % self.point_slots
        with self._lock:  # one series per slot to copy, whatever the number of routes
            live = [(epoch, _copy(total)) for epoch, total in self._totals if first <= epoch <= current]
        points = {}
        for epoch, total in live:
            points.setdefault(epoch // self.point_slots, _Series()).merge(total)
        out = []
        for point in range(first // self.point_slots, current // self.point_slots + 1):
            s = points.get(point) or _Series()
            start = point * self.point_slots * self.slot_seconds
            span = min(self.point_slots * self.slot_seconds, max(self.slot_seconds, now - start))
            out.append({"t": start, "requests": s.count,
                        "requests_per_minute": round(s.count * 60.0 / span, 2),
                        "p50_ms": round(s.percentile(0.50), 3) if s.count else None,
                        "p95_ms": round(s.percentile(0.95), 3) if s.count else None,
                        "error_rate": round(s.errors / s.count, 4) if s.count else 0.0})
        return {"seconds": self.history_seconds, "point_seconds": self.point_slots * self.slot_seconds,
                "points": out}

    def summary(self):
        """Average and p95 response time over the window (for ``/bmad/health``)."""
        _, merged = self._window()
        overall = _Series()
        for s in merged.values():
            overall.merge(s)
        return {"avg_response_ms": round(overall.avg(), 3), "p95_ms": round(overall.percentile(0.95), 3)}


def _copy(series):
    clone = _Series()
    clone.merge(series)
    return clone
