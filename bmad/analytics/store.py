"""The analytics database: one file, WAL, ordered migrations, pooled read-only readers.

``Store.open(path)`` creates the file when needed, sets the pragmas, and
applies the migrations that are not yet recorded in ``schema_migrations``,
each in its own transaction. The write connection belongs to the writer
thread; reports borrow read-only connections from a small pool, each with a
time limit so a runaway query is interrupted instead of holding a thread.
"""

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError, ServiceUnavailable

BUSY_TIMEOUT_MS = 5000
READ_TIME_LIMIT_SECONDS = 10.0
MAX_IDLE_READERS = 4
# Reports run at most this many at once, each on a pooled reader with a small page cache: many
# concurrent report queries would each hold a page cache and sorter memory, and readers opened
# and closed under load leave the C heap fragmented (RSS grows though SQLite frees the memory).
MAX_CONCURRENT_READS = 4
READER_CACHE_KIB = 512
READ_QUEUE_SECONDS = 10.0
WRITER_CACHE_KIB = 2048
WAL_AUTOCHECKPOINT_PAGES = 4000


def _create_events(conn):
    conn.execute("""CREATE TABLE events (
        id INTEGER PRIMARY KEY, ts REAL NOT NULL, type TEXT NOT NULL,
        user_id TEXT, session_id TEXT, route TEXT, method TEXT, status INTEGER, outcome TEXT,
        error INTEGER NOT NULL DEFAULT 0, error_type TEXT, latency_ms REAL, tool TEXT, workflow TEXT,
        run_id TEXT, step TEXT, provider TEXT, model TEXT, prompt_tokens INTEGER, completion_tokens INTEGER,
        cost_usd REAL, extra TEXT)""")
    conn.execute("CREATE INDEX events_ts ON events(ts)")
    conn.execute("CREATE INDEX events_type_ts ON events(type, ts)")
    # Partial indexes: most events have no workflow or provider, so they cost nothing to write there.
    conn.execute("CREATE INDEX events_user_ts ON events(user_id, ts) WHERE user_id IS NOT NULL")
    conn.execute("CREATE INDEX events_workflow_ts ON events(workflow, ts) WHERE workflow IS NOT NULL")
    conn.execute("CREATE INDEX events_provider_ts ON events(provider, ts) WHERE provider IS NOT NULL")


def _create_rollup(conn):
    # One row per (day, type, dimension, key): dim is 'all' (key ''), 'user', 'route', 'status',
    # 'error_type', 'tool', 'workflow' or 'provider'. Kept after the raw events are purged.
    conn.execute("""CREATE TABLE daily_rollup (
        dim TEXT NOT NULL, day INTEGER NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL,
        events INTEGER NOT NULL, errors INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, latency_sum REAL NOT NULL,
        latency_count INTEGER NOT NULL,
        PRIMARY KEY (dim, day, type, key)) WITHOUT ROWID""")


def _create_sessions_and_users(conn):
    conn.execute("""CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, started_ts REAL NOT NULL, last_ts REAL NOT NULL,
        events INTEGER NOT NULL)""")
    conn.execute("CREATE INDEX sessions_user_last ON sessions(user_id, last_ts)")
    conn.execute("CREATE INDEX sessions_last ON sessions(last_ts)")
    conn.execute("""CREATE TABLE users (
        user_id TEXT PRIMARY KEY, first_seen REAL NOT NULL, last_seen REAL NOT NULL) WITHOUT ROWID""")


def _add_total_tokens(conn):
    # Callers that know only a total (tool runs, workflow steps) report ``tokens``.
    conn.execute("ALTER TABLE events ADD COLUMN total_tokens INTEGER")
    conn.execute("ALTER TABLE daily_rollup ADD COLUMN total_tokens INTEGER NOT NULL DEFAULT 0")


def _index_sessions_by_start(conn):
    # (user_id, started_ts) never changes when a session is extended; (user_id, last_ts) moved on every batch.
    conn.execute("DROP INDEX sessions_user_last")
    conn.execute("CREATE INDEX sessions_user_started ON sessions(user_id, started_ts)")


def _index_for_reports(conn):
    # Wider entity indexes, measured with 1,000,000 events: the user report's request counts and the
    # provider p95 become index-only scans instead of one table lookup per event.
    conn.execute("DROP INDEX events_user_ts")
    conn.execute("CREATE INDEX events_user_type_ts ON events(user_id, type, ts, error) WHERE user_id IS NOT NULL")
    conn.execute("DROP INDEX events_provider_ts")
    conn.execute("CREATE INDEX events_provider_type_ts ON events(provider, type, ts, latency_ms) "
                 "WHERE provider IS NOT NULL")


def _roll_up_steps(conn):
    # The workflow report's per-step figures move to the rollup (dim 'step'); existing events are
    # folded in here so the report stays complete for data recorded before this migration.
    conn.execute("""INSERT INTO daily_rollup (dim, day, type, key, events, errors, prompt_tokens,
        completion_tokens, cost_usd, latency_sum, latency_count, total_tokens)
        SELECT 'step', CAST(ts / 86400 AS INTEGER), type,
        workflow || char(31) || step || char(31) || coalesce(tool, ''),
        COUNT(*), SUM(error), SUM(coalesce(prompt_tokens, 0)), SUM(coalesce(completion_tokens, 0)),
        SUM(coalesce(cost_usd, 0)), SUM(coalesce(latency_ms, 0)), COUNT(latency_ms), SUM(coalesce(total_tokens, 0))
        FROM events WHERE type = 'workflow_step_completed' AND workflow IS NOT NULL AND step IS NOT NULL
        GROUP BY 2, 4""")
    conn.execute("DROP INDEX events_workflow_ts")
    conn.execute("CREATE INDEX events_workflow_type_ts ON events(workflow, type, ts, latency_ms) "
                 "WHERE workflow IS NOT NULL")


# Ordered and append-only: a released migration is never edited, only followed by a new one.
MIGRATIONS = (
    ("0001_events", _create_events),
    ("0002_daily_rollup", _create_rollup),
    ("0003_sessions_and_users", _create_sessions_and_users),
    ("0004_total_tokens", _add_total_tokens),
    ("0005_index_sessions_by_start", _index_sessions_by_start),
    ("0006_index_for_reports", _index_for_reports),
    ("0007_roll_up_steps", _roll_up_steps),
)


def migrate(conn, clock=time.time, migrations=MIGRATIONS):
    """Apply the migrations not yet recorded, each in one transaction; returns the names applied."""
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


class Store:
    """The analytics database file: its write connection and a pool of read-only connections."""

    def __init__(self, path, write_conn):
        self.path = str(path)
        self.write_conn = write_conn
        self._uri = Path(self.path).resolve().as_uri() + "?mode=ro"
        self._idle = []
        self._lock = threading.Lock()
        self._read_slots = threading.BoundedSemaphore(MAX_CONCURRENT_READS)
        self._closed = False

    @classmethod
    def open(cls, path, clock=time.time):
        """Open (creating when needed) and migrate the database; ConfigError naming the file on failure."""
        path = Path(path)
        try:
            os.makedirs(path.parent, exist_ok=True)
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000.0)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch to WAL mode (got {mode})")
            # In WAL mode NORMAL only risks the last commits on power loss, never corruption.
            conn.execute("PRAGMA synchronous = NORMAL")
            # Batches touch index pages all over the file: a larger cache and rarer checkpoints keep
            # each commit's I/O down (the WAL then peaks near 16 MB between checkpoints).
            conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            migrate(conn, clock)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"analytics database {path}: cannot open it ({e})") from None
        return cls(path, conn)

    def _connect_reader(self):
        conn = sqlite3.connect(self._uri, uri=True, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000.0)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
        return conn

    @contextmanager
    def reading(self, time_limit=READ_TIME_LIMIT_SECONDS):
        """Lend a read-only connection; queries running past ``time_limit`` seconds are interrupted (503).

        At most ``MAX_CONCURRENT_READS`` readers are lent at once; a report that cannot get one within
        ``READ_QUEUE_SECONDS`` is answered 503 with Retry-After.
        """
        if not self._read_slots.acquire(timeout=READ_QUEUE_SECONDS):
            raise ServiceUnavailable("too many analytics reports are running; try again shortly",
                                     type="analytics_busy", headers={"Retry-After": "1"})
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            try:
                if conn is None:
                    conn = self._connect_reader()
            except sqlite3.Error as e:
                raise ServiceUnavailable(f"the analytics database cannot be read: {e}",
                                         type="analytics_unavailable") from None
            with self._borrowed(conn, time_limit) as borrowed:
                yield borrowed
        finally:
            self._read_slots.release()

    @contextmanager
    def _borrowed(self, conn, time_limit):
        deadline = time.monotonic() + time_limit
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 20000)
        healthy = True
        try:
            yield conn
        except sqlite3.OperationalError as e:
            healthy = False
            if "interrupted" in str(e):
                raise ServiceUnavailable(f"the analytics query took longer than {time_limit:g} s",
                                         type="analytics_timeout") from None
            raise ServiceUnavailable(f"the analytics database cannot be read: {e}",
                                     type="analytics_unavailable") from None
        finally:
            conn.set_progress_handler(None, 0)
            with self._lock:
                keep = healthy and not self._closed and len(self._idle) < MAX_IDLE_READERS
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def close(self):
        """Close every pooled reader and the write connection."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        self.write_conn.close()
