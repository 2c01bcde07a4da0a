"""The recording interface: ``record(type, **fields)``, called on request paths.

It checks the type, stamps ``ts`` from the injected clock, assigns the
session id (a user's run of events with gaps shorter than the session
timeout), updates the real-time windows and puts the row on the writer's
bounded queue without waiting. A full queue drops the event and counts the
drop. Nothing here raises to the caller or touches the disk.
"""

import threading
import uuid
from collections import OrderedDict

from .eventqueue import EventQueue
from .realtime import RealTime
from .schema import COMPLETION, COST, ERROR, EVENT_TYPES, LATENCY, PROMPT, RUN_ID, SESSION, USER, normalize

MAX_OPEN_SESSIONS = 100_000
WORKFLOW_ENDS = frozenset({"workflow_completed", "workflow_failed", "workflow_cancelled"})
DROP_REASONS = ("queue_full", "write_error", "invalid_type", "record_error", "closed")


def time_ordered_id(ts):
    """A unique session id that sorts by start time, so new sessions land on the index's last page."""
    return f"{int(ts * 1000):012x}{uuid.uuid4().hex[:12]}"


class Sessions:
    """Open sessions by user: ``(session_id, started, last_ts)``, oldest activity first, bounded."""

    def __init__(self, timeout_seconds, new_id=None):
        self.timeout = timeout_seconds
        self.new_id = new_id or time_ordered_id
        self.open = OrderedDict()

    def assign(self, user, ts):
        """The session id for ``user`` acting at ``ts``; True as second value when it is a new session."""
        current = self.open.get(user)
        if current is not None and ts - current[2] < self.timeout:
            current[2] = ts
            self.open.move_to_end(user)
            return current[0], False
        session_id = self.new_id(ts)
        self.open[user] = [session_id, ts, ts]
        self.open.move_to_end(user)
        # Sessions idle past the timeout can never continue: forget them oldest first.
        while self.open:
            oldest_user, oldest = next(iter(self.open.items()))
            if ts - oldest[2] < self.timeout and len(self.open) <= MAX_OPEN_SESSIONS:
                break
            self.open.popitem(last=False)
        return session_id, True

    def restore(self, user, session_id, started, last_ts):
        """Continue a session found in the database after a restart."""
        self.open[user] = [session_id, started, last_ts]


class Recorder:
    """``app.events`` when analytics is on: validates, stamps, sessions, windows, enqueues.

    Methods for the caller: ``record(type, **fields)``, ``realtime()``,
    ``stats()``; the owner (``bmad.analytics.install``) starts and closes it.
    """

    enabled = True

    def __init__(self, clock, queue_size, session_timeout_seconds, new_session_id=None):
        self.clock = clock
        self._lock = threading.Lock()
        self.queue = EventQueue(queue_size, self._lock)
        self.queue_size = queue_size
        self.sessions = Sessions(session_timeout_seconds, new_session_id)
        self.live = RealTime()
        self.recorded = {}
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.closed = False

    def record(self, type, **fields):
        """Record one event of ``type``; never blocks, never raises."""
        try:
            self._record(type, fields)
        except Exception:  # a bug here must never reach the request that is being answered
            self.count_dropped(1, "record_error")

    def _record(self, type, fields):
        if type not in EVENT_TYPES:
            self.count_dropped(1, "invalid_type")
            return
        ts = self.clock()
        row = normalize(type, ts, fields)
        user = row[USER]
        row[SESSION] = None  # assigned here, never taken from the caller
        # One short critical section, no I/O; the queue shares this lock, so queueing is an append.
        with self._lock:
            live = self.live
            if user is not None:
                row[SESSION], new_session = self.sessions.assign(user, ts)
                if new_session:
                    self._put("session_started",
                              normalize("session_started", ts, {"user_id": user, "session_id": row[SESSION]}))
                live.user_seen(ts, user)
            self._put(type, row)
            if type == "api_request":
                live.api_request(ts, user, row[ERROR], row[LATENCY])
            elif type == "provider_request":
                live.llm_spend(ts, row[PROMPT], row[COMPLETION], row[COST])
            elif type == "workflow_started":
                if row[RUN_ID] is not None:
                    live.workflow_started(ts, row[RUN_ID])
            elif type in WORKFLOW_ENDS:
                if row[RUN_ID] is not None:
                    live.workflow_ended(row[RUN_ID])

    def _put(self, type, row):
        """Queue ``row`` (the caller holds the lock) or count why it was dropped."""
        if self.closed:
            self.dropped["closed"] += 1
        elif self.queue.put_locked(row):
            self.recorded[type] = self.recorded.get(type, 0) + 1
        else:
            self.dropped["queue_full"] += 1

    def count_dropped(self, count, reason):
        """Count ``count`` events lost for ``reason`` (one of ``DROP_REASONS``)."""
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + count

    def restore_session(self, user, session_id, started, last_ts):
        """Continue a user's session that was open when the service last stopped."""
        with self._lock:
            self.sessions.restore(user, session_id, started, last_ts)

    def realtime(self):
        """The real-time metrics now (from memory; no database query)."""
        with self._lock:
            return self.live.snapshot(self.clock())

    def stats(self):
        """Counts for health and metrics: recorded by type, dropped by reason, queue depth."""
        with self._lock:
            return {"recorded": dict(self.recorded), "dropped": dict(self.dropped),
                    "queue_depth": self.queue.qsize(), "queue_size": self.queue_size}
