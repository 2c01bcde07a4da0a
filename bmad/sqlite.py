"""SQLite, the one home for it: connections, pragmas, ordered migrations and time-limited readers.

Every database of the service (analytics, runs, and any later one) opens
its file through here, so they share one discipline: WAL with
``synchronous = NORMAL`` (a killed process loses nothing committed; only an
OS crash may lose the last transactions), a busy timeout, migrations as an
ordered list of ``(name, function)`` each applied in its own
``BEGIN IMMEDIATE`` transaction and checked inside it (two processes opening
one file cannot both apply one), and read-only readers from a bounded pool,
each query under a time limit so a runaway one is interrupted instead of
holding a thread.
"""

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import ServiceUnavailable

BUSY_TIMEOUT_MS = 5000
READ_TIME_LIMIT_SECONDS = 10.0
READ_QUEUE_SECONDS = 10.0
PROGRESS_STEPS = 20000


def connect(path, *, readonly=False, rows=False):
    """A connection in autocommit mode (transactions are explicit); ``rows`` gives ``sqlite3.Row`` rows."""
    target = Path(path).resolve().as_uri() + "?mode=ro" if readonly else Path(path).resolve().as_uri()
    conn = sqlite3.connect(target, uri=True, isolation_level=None, check_same_thread=False,
                           timeout=BUSY_TIMEOUT_MS / 1000.0)
    if rows:
        conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def open_writer(path, *, cache_kib=None, wal_autocheckpoint=None, foreign_keys=False, rows=False):
    """The write connection of a database file: WAL, ``synchronous = NORMAL`` and the given tuning."""
    conn = connect(path, rows=rows)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise sqlite3.OperationalError(f"cannot switch {path} to WAL mode (got {mode})")
    conn.execute("PRAGMA synchronous = NORMAL")
    if cache_kib:
        conn.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
    if wal_autocheckpoint:
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(wal_autocheckpoint)}")
    if foreign_keys:
        conn.execute("PRAGMA foreign_keys = ON")
    return conn


def migrate(conn, migrations, clock=time.time):
    """Apply the ``(name, function)`` migrations not yet recorded, in order; returns the names applied.

    Ordered and append-only: a released migration is never edited, only followed by a new one.
    """
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    applied = []
    for name, apply in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Checked inside the transaction so two processes opening one file cannot both apply it.
            if conn.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (name,)).fetchone():
                conn.execute("COMMIT")
                continue
            apply(conn)
            conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (name, clock()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


class ReaderPool:
    """Read-only connections to one file: at most ``max_concurrent`` lent at once, ``max_idle`` kept.

    ``reading(time_limit)`` lends one; a query running past the limit is
    interrupted and answered 503 ``{name}_timeout``; a caller that waits
    longer than ``READ_QUEUE_SECONDS`` for a reader gets 503 ``{name}_busy``.
    """

    def __init__(self, path, *, name, max_idle=4, max_concurrent=4, cache_kib=None, rows=False,
                 monotonic=time.monotonic):
        self.path = str(path)
        self.name = name
        self.max_idle = max_idle
        self.cache_kib = cache_kib
        self.rows = rows
        self.monotonic = monotonic
        self._idle = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._closed = False

    def _open(self):
        conn = connect(self.path, readonly=True, rows=self.rows)
        if self.cache_kib:
            conn.execute(f"PRAGMA cache_size = -{int(self.cache_kib)}")
        return conn

    @contextmanager
    def reading(self, time_limit=READ_TIME_LIMIT_SECONDS):
        """Lend a read-only connection whose queries are interrupted after ``time_limit`` seconds."""
        if not self._slots.acquire(timeout=READ_QUEUE_SECONDS):
            raise ServiceUnavailable(f"too many {self.name} reads are running; try again shortly",
                                     type=f"{self.name}_busy", headers={"Retry-After": "1"})
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            try:
                if conn is None:
                    conn = self._open()
            except sqlite3.Error as e:
                raise ServiceUnavailable(f"the {self.name} database cannot be read: {e}",
                                         type=f"{self.name}_unavailable") from None
            with self._borrowed(conn, time_limit) as borrowed:
                yield borrowed
        finally:
            self._slots.release()

    @contextmanager
    def _borrowed(self, conn, time_limit):
        deadline = self.monotonic() + time_limit
        monotonic = self.monotonic
        conn.set_progress_handler(lambda: 1 if monotonic() > deadline else 0, PROGRESS_STEPS)
        healthy = True
        try:
            yield conn
        except sqlite3.OperationalError as e:
            healthy = False
            if "interrupted" in str(e):
                raise ServiceUnavailable(f"the {self.name} query took longer than {time_limit:g} s",
                                         type=f"{self.name}_timeout") from None
            raise ServiceUnavailable(f"the {self.name} database cannot be read: {e}",
                                     type=f"{self.name}_unavailable") from None
        finally:
            conn.set_progress_handler(None, 0)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            with self._lock:
                keep = healthy and not self._closed and len(self._idle) < self.max_idle
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def close(self):
        """Close every idle reader; readers lent out now are closed when they come back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
