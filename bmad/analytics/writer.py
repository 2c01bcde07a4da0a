"""The writer thread: the only code that writes the analytics database.

It takes events from the bounded queue the recorder fills and commits them
in batches (``batch_size`` events, or whatever arrived within
``flush_interval`` seconds of the batch's first event, whichever comes first),
each batch with its rollup, session and user changes in one ``BEGIN
IMMEDIATE`` transaction. Between batches it runs the retention purge a bounded
step at a time. Control markers travel through the same queue, so "flush" and
"stop" mean "everything recorded before this is committed".

A failed commit (disk full, a locked file) drops that batch, counts it and
keeps going, so recording resumes by itself once the cause is gone.
"""

import json
import sqlite3
import threading
import time
import traceback
from collections import deque

from .bulk import BulkInsert
from .retention import purge_step
from .rollup import Batch
from .schema import ROW_COLUMNS

INSERT_EVENTS = BulkInsert(f"INSERT INTO events ({', '.join(ROW_COLUMNS)})", len(ROW_COLUMNS))
ERROR_LOG_INTERVAL_SECONDS = 60.0


class Control:
    """A marker put on the queue: ``flush``, ``pause``, ``purge`` or ``stop``; ``done`` is set when handled."""

    __slots__ = ("kind", "done")

    def __init__(self, kind):
        self.kind = kind
        self.done = threading.Event()


class JsonlSink:
    """Appends every committed event as one JSON line (for shipping to a central log pipeline)."""

    def __init__(self, path):
        self.path = path
        self.file = open(path, "a", encoding="utf-8")

    def write(self, rows):
        """Append ``rows``; the caller handles OSError."""
        lines = []
        for row in rows:
            event = {name: value for name, value in zip(ROW_COLUMNS, row) if value is not None}
            if "extra" in event:
                event["extra"] = json.loads(event["extra"])
            lines.append(json.dumps(event, separators=(",", ":"), ensure_ascii=False))
        self.file.write("\n".join(lines) + "\n")
        self.file.flush()

    def close(self):
        """Close the file."""
        self.file.close()


class Writer:
    """Owns the write connection; drains the queue into batched transactions.

    Methods for the caller: ``start()``, ``alive``, ``request(kind)`` (put a
    control marker and wait for it), ``resume()`` (after a ``pause``).
    """

    def __init__(self, store, events, *, batch_size, flush_interval, schedule, logger, sink=None,
                 on_dropped=None, monotonic=time.monotonic):
        self.store = store
        self.conn = store.write_conn
        self.queue = events
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.schedule = schedule
        self.logger = logger
        self.sink = sink
        self.on_dropped = on_dropped or (lambda count, reason: None)
        self.monotonic = monotonic
        self.written = 0
        self.batches = 0
        self.failed = 0
        self.last_error = None
        self.last_batch_ok = True
        self._last_error_logged = None
        self._resume = threading.Event()
        self._resume.set()
        self._purging = False
        self._purge_deleted = 0
        self._purge_cutoff = 0.0
        self._purge_waiters = []
        self._pending = deque()  # taken from the queue, not yet handled (only the writer thread uses it)
        self._thread = threading.Thread(target=self._run, name="bmad-analytics-writer", daemon=True)

    def start(self):
        """Start the writer thread."""
        self._thread.start()
        return self

    @property
    def alive(self):
        """True while the writer thread runs."""
        return self._thread.is_alive()

    def request(self, kind, timeout=None):
        """Queue a control marker and wait until the writer has handled it; True when it has."""
        control = Control(kind)
        self.queue.put_control(control)
        if not self.alive:
            return False
        return control.done.wait(timeout)

    def resume(self):
        """Let a paused writer continue."""
        self._resume.set()

    def join(self, timeout=None):
        """Wait up to ``timeout`` seconds for the writer thread to end."""
        self._thread.join(timeout)

    # -- the thread ----------------------------------------------------------------------------

    def _run(self):
        try:
            self._retention_step()  # the startup purge, before the first batch
        except Exception:
            self.logger.error("analytics retention purge failed", error=traceback.format_exc(limit=5))
        while True:
            try:
                batch, controls = self._collect()
                if batch:
                    self._commit(batch)
                # Before the controls, so that a completed "flush" also means a due purge step ran.
                self._retention_step()
                for control in controls:
                    if self._handle(control):
                        return
            except Exception:
                self.logger.error("analytics writer error", error=traceback.format_exc(limit=5))

    def _collect(self):
        """The next batch: up to ``batch_size`` events, or fewer once ``flush_interval`` has passed
        since its first one, ended early by a control marker (returned as the second value)."""
        pending = self._pending
        batch = []
        deadline = None
        while len(batch) < self.batch_size:
            if not pending:
                wanted = self.batch_size - len(batch)
                if deadline is None:
                    timeout = 0.0 if self._purging else self.flush_interval
                    wait_for = 1  # the first event starts the batch's flush interval
                else:
                    timeout = deadline - self.monotonic()
                    if timeout <= 0 or self._purging:
                        break
                    wait_for = wanted  # a full batch or the deadline, not a wake-up per event
                pending.extend(self.queue.take(wanted, timeout, wait_for))
                if not pending:
                    break
            item = pending.popleft()
            if isinstance(item, Control):
                return batch, [item]
            if deadline is None:
                deadline = self.monotonic() + self.flush_interval
            batch.append(item)
        return batch, []

    def _commit(self, rows):
        conn = self.conn
        try:
            changes = Batch()
            changes.fold(rows)
            conn.execute("BEGIN IMMEDIATE")
            try:
                INSERT_EVENTS.run(conn, rows)
                changes.write(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as e:
            self.failed += len(rows)
            self.last_batch_ok = False
            self.last_error = f"{type(e).__name__}: {e}"
            self.on_dropped(len(rows), "write_error")
            now = self.monotonic()
            if self._last_error_logged is None or now - self._last_error_logged >= ERROR_LOG_INTERVAL_SECONDS:
                self._last_error_logged = now
                self.logger.error("analytics batch not written; its events are dropped", events=len(rows),
                                  error=self.last_error, dropped_total=self.failed)
            return
        self.written += len(rows)
        self.batches += 1
        self.last_batch_ok = True
        if self.sink is not None:
            try:
                self.sink.write(rows)
            except (OSError, ValueError) as e:
                self.logger.error("analytics jsonl sink write failed", path=self.sink.path, error=str(e))

    def _handle(self, control):
        """Act on a control marker; True when the writer should exit."""
        kind = control.kind
        if kind == "flush":
            control.done.set()
        elif kind == "pause":
            self._resume.clear()
            control.done.set()
            self._resume.wait()
        elif kind == "purge":
            self._start_purge()
            self._purge_waiters.append(control)
        elif kind == "stop":
            self._drain()
            self._finish()
            control.done.set()
            return True
        return False

    def _drain(self):
        """Commit every event still queued (used at shutdown)."""
        pending = self._pending
        while True:
            if not pending:
                pending.extend(self.queue.take(self.batch_size, 0.0))
                if not pending:
                    return
            batch = []
            while pending and len(batch) < self.batch_size:
                item = pending.popleft()
                if isinstance(item, Control):
                    item.done.set()
                else:
                    batch.append(item)
            if batch:
                self._commit(batch)

    def _finish(self):
        for control in self._purge_waiters:
            control.done.set()
        try:
            self.conn.execute("PRAGMA optimize")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        if self.sink is not None:
            try:
                self.sink.close()
            except OSError:
                pass

    def _start_purge(self):
        if not self._purging:
            self._purging = True
            self._purge_deleted = 0
            self._purge_cutoff = self.schedule.cutoff()

    def _retention_step(self):
        if not self._purging and self.schedule.due():
            self._start_purge()
        if not self._purging:
            return
        try:
            deleted, done = purge_step(self.conn, self._purge_cutoff)
        except sqlite3.Error as e:
            self.logger.error("analytics retention purge failed", error=str(e))
            deleted, done = 0, True
        self._purge_deleted += deleted
        if done:
            self._purging = False
            self.schedule.finished(self._purge_deleted)
            if self._purge_deleted:
                self.logger.info("analytics retention purge", deleted=self._purge_deleted)
            waiters, self._purge_waiters = self._purge_waiters, []
            for control in waiters:
                control.done.set()
