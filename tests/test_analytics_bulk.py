"""Multi-row INSERT statements for the analytics writer: every row once, in order, within SQLite's limits."""

import sqlite3

import pytest

from bmad.analytics.bulk import MAX_ROWS, BulkInsert

ROWS = BulkInsert("INSERT INTO t (a, b)", 2)
COUNTS = BulkInsert("INSERT INTO counts (k, n)", 2, "ON CONFLICT (k) DO UPDATE SET n = n + excluded.n")


class Recording:
    """A connection that records each statement's row count; ``getlimit`` only when given a limit."""

    def __init__(self, conn, limit=None):
        self.conn = conn
        self.sizes = []
        if limit is not None:
            self.getlimit = lambda which: limit

    def execute(self, sql, params):
        self.sizes.append(len(params) // 2)
        return self.conn.execute(sql, params)


@pytest.fixture
def conn():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a, b)")
    conn.execute("CREATE TABLE counts (k PRIMARY KEY, n)")
    yield conn
    conn.close()


@pytest.mark.parametrize("count", [0, 1, 2, 5, MAX_ROWS - 1, MAX_ROWS, MAX_ROWS + 1, 3 * MAX_ROWS + 77])
def test_every_row_is_inserted_once_in_order(conn, count):
    rows = [(i, f"v{i}") for i in range(count)]
    recording = Recording(conn, limit=32766)
    ROWS.run(recording, rows)
    assert conn.execute("SELECT a, b FROM t ORDER BY rowid").fetchall() == rows
    assert sum(recording.sizes) == count
    assert all(size == MAX_ROWS or size & (size - 1) == 0 for size in recording.sizes)  # few distinct statements
    assert len(recording.sizes) <= count // MAX_ROWS + MAX_ROWS.bit_length()


def test_chunks_stay_under_the_bound_values_limit(conn):
    recording = Recording(conn)  # no getlimit (Python 3.10): SQLite's old limit of 999 values is assumed
    ROWS.run(recording, [(i, i) for i in range(1200)])
    assert max(recording.sizes) * 2 <= 999
    assert conn.execute("SELECT COUNT(*), SUM(a) FROM t").fetchone() == (1200, sum(range(1200)))
    tight = Recording(conn, limit=7)  # three rows of two values at most
    ROWS.run(tight, [(i, i) for i in range(10)])
    assert max(tight.sizes) == 3


def test_upsert_rows_add_up_within_and_across_statements(conn):
    COUNTS.run(conn, [("a", 1), ("b", 2)])
    COUNTS.run(conn, [("a", 10)] + [(f"k{i}", 1) for i in range(MAX_ROWS + 3)] + [("b", 20)])
    counts = dict(conn.execute("SELECT k, n FROM counts"))
    assert counts["a"] == 11 and counts["b"] == 22
    assert len(counts) == MAX_ROWS + 5
