"""Keep the C heap from holding on to memory the service has freed (glibc only).

Every thread that allocates gets its own glibc malloc arena by default (up to
8 per core), and memory freed in one arena is not reused by another, so a
threaded server's resident size creeps up with fragmentation even when the
live data stays flat (SQLite page caches and sorters make this visible).
Capping the arenas at startup, before the worker threads exist, and trimming
the heap now and then keep the resident size close to what is in use. On a
C library without ``mallopt``/``malloc_trim`` this does nothing.

SQLite allocates its page caches from the same heap. Each connection's
``cache_size`` only bounds that connection, so ``limit_sqlite`` also sets one
process-wide soft limit: past it SQLite recycles clean cached pages instead
of allocating more, which holds its memory near the limit however many
connections the analytics and runs databases have open (pages in use by a
running statement, dirty pages and sorters may still take it over briefly).
"""

import ctypes
import ctypes.util
import sqlite3
import threading

M_ARENA_MAX = -8  # glibc malloc.h
DEFAULT_ARENAS = 2
SQLITE_HEAP_BYTES = 4 * 1024 * 1024


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except (OSError, AttributeError):
        return None


def cap_arenas(arenas=DEFAULT_ARENAS):
    """Limit glibc to ``arenas`` malloc arenas; call before starting threads. True when applied."""
    libc = _libc()
    return bool(libc and libc.mallopt(M_ARENA_MAX, arenas) == 1)


def limit_sqlite(limit_bytes=SQLITE_HEAP_BYTES):
    """Set SQLite's process-wide soft heap limit; returns the limit now in force (bytes)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"PRAGMA soft_heap_limit = {int(limit_bytes)}")
        return conn.execute("PRAGMA soft_heap_limit").fetchone()[0]
    finally:
        conn.close()


def trim():
    """Return free heap pages to the operating system; True when anything was released."""
    libc = _libc()
    return bool(libc and libc.malloc_trim(0))


class Trimmer:
    """Calls ``trim()`` every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, interval=30.0):
        self.interval = interval
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        if _libc() is None:
            return self
        self._thread = threading.Thread(target=self._run, name="bmad-heap-trim", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()

    def _run(self):
        while not self._stop.wait(self.interval):
            trim()
