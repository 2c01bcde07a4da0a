"""The runs database file: WAL, ordered migrations, one writer thread, pooled readers.

Every write is a function ``job(conn)`` put on a bounded queue; the writer
thread owns the only write connection and commits whatever jobs are waiting
in one ``BEGIN IMMEDIATE`` transaction, each job inside its own savepoint so
one failing job does not undo its neighbours. ``write(job)`` waits for the
commit, so a caller that returns has its change on disk (in the WAL, which
survives the process being killed). Readers borrow read-only connections
from a small pool.

Methods for the caller: ``Database.open(path, migrations, logger)``,
``write(job)``, ``read(fn)``, ``close()``.
"""

import queue
import sqlite3
import threading
from contextlib import contextmanager

BUSY_TIMEOUT_MS = 5000
MAX_IDLE_READERS = 4
MAX_PENDING_WRITES = 10_000
MAX_BATCH = 256
WRITE_WAIT_SECONDS = 30.0


class DatabaseClosed(Exception):
    """The database was closed before the write could be committed."""


class _Job:
    __slots__ = ("fn", "waited", "done", "result", "error")

    def __init__(self, fn, waited):
        self.fn = fn
        self.waited = waited
        self.done = threading.Event()
        self.result = None
        self.error = None


_STOP = object()


def _connect(path, readonly=False):
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                           timeout=BUSY_TIMEOUT_MS / 1000)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def migrate(conn, migrations):
    """Apply the named migrations not yet recorded in ``schema_migrations``, each in its own transaction."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
    for fn in migrations:
        if fn.__name__ in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            fn(conn)
            conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, datetime('now'))",
                         (fn.__name__,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


class Database:
    """One SQLite file with a single writer thread and a pool of read-only connections."""

    def __init__(self, path, write_conn, logger):
        self.path = path
        self.logger = logger
        self._write_conn = write_conn
        self._jobs = queue.Queue(MAX_PENDING_WRITES)
        self._readers = queue.LifoQueue(MAX_IDLE_READERS)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="bmad-runs-writer", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, path, migrations, logger):
        """Open (creating when needed) and migrate the database at ``path``; start its writer."""
        conn = _connect(path)
        # WAL lets readers run beside the writer; NORMAL still survives a killed process
        # (only an OS crash can lose the last transactions).
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, migrations)
        return cls(path, conn, logger)

    def write(self, fn, wait=True):
        """Run ``fn(conn)`` in the writer's next transaction; with ``wait``, return its result once committed."""
        if self._closed:
            raise DatabaseClosed(f"runs database {self.path} is closed")
        job = _Job(fn, wait)
        self._jobs.put(job, timeout=WRITE_WAIT_SECONDS)
        if not wait:
            return None
        if not job.done.wait(WRITE_WAIT_SECONDS):
            raise TimeoutError(f"runs database {self.path}: a write was not committed within {WRITE_WAIT_SECONDS} s")
        if job.error is not None:
            raise job.error
        return job.result

    def _run(self):
        conn = self._write_conn
        while True:
            first = self._jobs.get()
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            stop = any(job is _STOP for job in batch)
            jobs = [job for job in batch if job is not _STOP]
            if jobs:
                self._commit(conn, jobs)
            if stop:
                conn.close()
                return

    def _commit(self, conn, jobs):
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in jobs:
                conn.execute("SAVEPOINT job")
                try:
                    job.result = job.fn(conn)
                    conn.execute("RELEASE job")
                except Exception as e:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    job.error = e
                    if not job.waited:  # nobody will see the exception: say it here
                        self.logger.error("runs database write failed", error=f"{type(e).__name__}: {e}")
            conn.execute("COMMIT")
        except Exception as e:
            self.logger.error("runs database write failed", error=f"{type(e).__name__}: {e}")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in jobs:
                job.error = job.error or e
        for job in jobs:
            job.done.set()

    @property
    def alive(self):
        """True while the writer thread is running."""
        return self._thread.is_alive()

    @contextmanager
    def reader(self):
        """Borrow a read-only connection."""
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = _connect(self.path, readonly=True)
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            try:
                self._readers.put_nowait(conn)
            except queue.Full:
                conn.close()

    def read(self, fn):
        """Return ``fn(conn)`` run on a read-only connection."""
        with self.reader() as conn:
            return fn(conn)

    def close(self):
        """Commit what is queued, stop the writer and close every connection."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(_STOP)
        self._thread.join(timeout=WRITE_WAIT_SECONDS)
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break
