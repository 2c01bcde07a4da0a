"""The process-wide SQLite memory budget the service sets at startup."""

import sqlite3

from bmad.ops import allocator


def _soft_heap_limit():
    conn = sqlite3.connect(":memory:")
    try:
        return conn.execute("PRAGMA soft_heap_limit").fetchone()[0]
    finally:
        conn.close()


def test_limit_sqlite_sets_one_limit_for_every_connection():
    before = _soft_heap_limit()
    try:
        assert allocator.limit_sqlite(3 * 1024 * 1024) == 3 * 1024 * 1024
        assert _soft_heap_limit() == 3 * 1024 * 1024  # seen from a connection opened afterwards
        assert allocator.limit_sqlite() == allocator.SQLITE_HEAP_BYTES
    finally:
        allocator.limit_sqlite(before)
    assert _soft_heap_limit() == before
