"""Many rows in one statement: ``INSERT ... VALUES (...), (...), ...``.

``executemany`` runs one statement step per row, and the sqlite3 module gives
up the GIL around every step. With many request threads busy, the writer
thread then waits to get the GIL back once per row and falls behind the
traffic: in the 50,000-request soak its queue grew to 20,000 events (and the
process's memory with it) before it caught up. One statement per chunk of up
to ``MAX_ROWS`` rows takes the GIL back once per chunk instead. (Larger chunks
buy little more and cost memory: a prepared 256-row insert of an event holds
about 600 KiB, a 64-row one about 150 KiB.)
"""

import sqlite3
from itertools import chain

MAX_ROWS = 64
# SQLite before 3.32 allows 999 bound values per statement; later versions 32,766.
_OLD_VARIABLE_LIMIT = 999


class BulkInsert:
    """``head`` (``INSERT INTO t (a, b, ...)``) and ``tail`` (e.g. ``ON CONFLICT ...``) around VALUES rows."""

    def __init__(self, head, width, tail=""):
        self.head = head
        self.width = width
        self.tail = tail
        self._sql = {}

    def sql(self, rows):
        """The statement for ``rows`` rows (built once per size)."""
        text = self._sql.get(rows)
        if text is None:
            one = "(" + ", ".join(["?"] * self.width) + ")"
            text = f"{self.head} VALUES {', '.join([one] * rows)} {self.tail}".rstrip()
            self._sql[rows] = text
        return text

    def run(self, conn, rows):
        """Insert ``rows`` (sequences of ``width`` values) in order, in as few statements as the limits allow.

        Chunks are ``MAX_ROWS`` rows, then powers of two for the rest, so a
        connection prepares only a handful of distinct statements.
        """
        cap = max(1, min(MAX_ROWS, _variable_limit(conn) // self.width))
        done, total = 0, len(rows)
        while done < total:
            left = total - done
            size = cap if left >= cap else 1 << (left.bit_length() - 1)
            conn.execute(self.sql(size), list(chain.from_iterable(rows[done:done + size])))
            done += size


def _variable_limit(conn):
    getlimit = getattr(conn, "getlimit", None)  # Python 3.11+
    if getlimit is None:
        return _OLD_VARIABLE_LIMIT
    return getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
