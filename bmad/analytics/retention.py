"""Retention: deleting raw events older than ``analytics.retention_days``, a bounded batch at a time.

The writer thread runs the purge (it owns the write connection), one
``purge_step`` between event batches, so a large purge never holds the write
lock for long and recording keeps flowing. The daily rollup and the users
table are kept; sessions that ended before the cutoff are deleted with the
events.
"""

DAY_SECONDS = 86400.0
PURGE_BATCH_ROWS = 2000


class RetentionSchedule:
    """When the next purge is due: at startup, then every ``interval`` seconds of the injected clock."""

    def __init__(self, retention_days, clock, interval=DAY_SECONDS):
        self.retention_seconds = retention_days * DAY_SECONDS
        self.clock = clock
        self.interval = interval
        self.next_due = clock()
        self.last_run = None
        self.last_deleted = 0

    def due(self):
        """True when a purge should start now."""
        return self.clock() >= self.next_due

    def cutoff(self):
        """Events with ``ts`` before this are past retention."""
        return self.clock() - self.retention_seconds

    def finished(self, deleted):
        """Record a completed purge and schedule the next one."""
        now = self.clock()
        self.last_run = now
        self.last_deleted = deleted
        self.next_due = now + self.interval


def purge_step(conn, cutoff, limit=PURGE_BATCH_ROWS):
    """Delete up to ``limit`` expired events and sessions in one transaction; returns ``(deleted, done)``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        events = conn.execute("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ts < ? LIMIT ?)",
                              (cutoff, limit)).rowcount
        sessions = conn.execute("DELETE FROM sessions WHERE rowid IN "
                                "(SELECT rowid FROM sessions WHERE last_ts < ? LIMIT ?)", (cutoff, limit)).rowcount
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return events, events < limit and sessions < limit
