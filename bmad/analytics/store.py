"""The analytics database: its schema migrations, and the file opened through ``bmad/sqlite.py``.

``Store.open(path)`` creates the file when needed and applies the
migrations not yet recorded. The write connection belongs to the writer
thread; reports borrow time-limited read-only connections from the pool.
"""

import os
import sqlite3
import time
from pathlib import Path

from .. import sqlite
from ..errors import ConfigError

READ_TIME_LIMIT_SECONDS = sqlite.READ_TIME_LIMIT_SECONDS
MAX_IDLE_READERS = 4
# Reports run at most this many at once, each on a pooled reader with a small page cache: many
# concurrent report queries would each hold a page cache and sorter memory, and readers opened
# and closed under load leave the C heap fragmented (RSS grows though SQLite frees the memory).
MAX_CONCURRENT_READS = 4
READER_CACHE_KIB = 512
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
    """Apply the analytics migrations not yet recorded; returns the names applied."""
    return sqlite.migrate(conn, migrations, clock)


class Store:
    """The analytics database file: its write connection and a pool of time-limited read-only readers."""

    def __init__(self, path, write_conn):
        self.path = str(path)
        self.write_conn = write_conn
        self.readers = sqlite.ReaderPool(self.path, name="analytics", max_idle=MAX_IDLE_READERS,
                                         max_concurrent=MAX_CONCURRENT_READS, cache_kib=READER_CACHE_KIB)

    @classmethod
    def open(cls, path, clock=time.time):
        """Open (creating when needed) and migrate the database; ConfigError naming the file on failure."""
        path = Path(path)
        try:
            os.makedirs(path.parent, exist_ok=True)
            # Batches touch index pages all over the file: a larger cache and rarer checkpoints keep
            # each commit's I/O down (the WAL then peaks near 16 MB between checkpoints).
            conn = sqlite.open_writer(path, cache_kib=WRITER_CACHE_KIB, wal_autocheckpoint=WAL_AUTOCHECKPOINT_PAGES)
            migrate(conn, clock)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"analytics database {path}: cannot open it ({e})") from None
        return cls(path, conn)

    def reading(self, time_limit=READ_TIME_LIMIT_SECONDS):
        """Lend a read-only connection; queries running past ``time_limit`` seconds are interrupted (503).

        At most ``MAX_CONCURRENT_READS`` readers are lent at once; a report that cannot get one in time is
        answered 503 with Retry-After.
        """
        return self.readers.reading(time_limit)

    def close(self):
        """Close every pooled reader and the write connection."""
        self.readers.close()
        self.write_conn.close()
