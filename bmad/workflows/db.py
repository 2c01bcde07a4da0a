"""The runs database file (opened through ``bmad/sqlite.py``): one writer thread and pooled readers.

Every write is a function ``job(conn)`` put on a bounded queue; the writer
thread owns the only write connection and commits whatever jobs are waiting
in one ``BEGIN IMMEDIATE`` transaction, each job inside its own savepoint so
one failing job does not undo its neighbours. ``write(job)`` waits for the
commit, so a caller that returns has its change on disk (in the WAL, which
survives the process being killed). Readers borrow read-only connections
from a small pool.

Methods for the caller: ``Database.open(path, migrations, logger)``,
``write(job)``, ``read(fn)``, ``close()``; ``migrations`` are ``(name, function)`` pairs.
"""

import queue
import threading

from .. import sqlite

MAX_IDLE_READERS = 4
MAX_CONCURRENT_READS = 8
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


class Database:
    """One SQLite file with a single writer thread and a pool of read-only connections."""

    def __init__(self, path, write_conn, logger):
        self.path = path
        self.logger = logger
        self._write_conn = write_conn
        self._jobs = queue.Queue(MAX_PENDING_WRITES)
        self._readers = sqlite.ReaderPool(path, name="runs", max_idle=MAX_IDLE_READERS,
                                          max_concurrent=MAX_CONCURRENT_READS, rows=True)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="bmad-runs-writer", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, path, migrations, logger):
        """Open (creating when needed) and migrate the database at ``path``; start its writer."""
        conn = sqlite.open_writer(path, foreign_keys=True, rows=True)
        sqlite.migrate(conn, migrations)
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

    def reader(self, time_limit=sqlite.READ_TIME_LIMIT_SECONDS):
        """Borrow a time-limited read-only connection."""
        return self._readers.reading(time_limit)

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
        self._readers.close()
