"""Folding a batch of events into the daily rollup, the sessions and the users tables.

The writer calls ``Batch.fold(rows)`` and then ``Batch.write(conn)`` inside
the batch's transaction, so the rollup always agrees with the raw events it
was built from and needs no separate pass. Rollup rows are keyed by UTC day,
event type, a dimension and that dimension's value (users across all types); the reports read them for
counts and sums, which keeps a 90-day report cheap and lets trends outlive the
raw-event purge.
"""

from .bulk import BulkInsert
from .schema import COMPLETION, COST, ERROR, INDEX, LATENCY, PROMPT, ROW_OFFSET, SESSION, TOTAL, TS, TYPE, USER

DAY_SECONDS = 86400

# (dimension, column index) pairs each event is counted under, besides ('all', '').
DIMENSIONS = tuple((dim, INDEX[column]) for dim, column in (
    ("route", "route"), ("status", "status"), ("error_type", "error_type"),
    ("tool", "tool"), ("workflow", "workflow"), ("provider", "provider")))
# Users are rolled up across all types (type '*'): one row per active user and day is all that
# distinct-user counts (DAU, MAU) need, and it keeps that part of the table small.
ANY_TYPE = "*"
# Workflow steps are rolled up under dim 'step', key "workflow<SEP>step<SEP>tool", so one workflow's
# steps are one key range and the per-step report needs no raw events.
STEP_SEP = "\x1f"

WORKFLOW_I, STEP_I, TOOL_I = INDEX["workflow"], INDEX["step"], INDEX["tool"]
WIDTH = 8  # events, errors, prompt, completion, cost, latency sum, latency count, total tokens

UPSERT_ROLLUP = BulkInsert(
    "INSERT INTO daily_rollup (dim, day, type, key, events, errors, prompt_tokens, completion_tokens, cost_usd, "
    "latency_sum, latency_count, total_tokens)", 12,
    """ON CONFLICT (dim, day, type, key) DO UPDATE SET events = events + excluded.events,
    errors = errors + excluded.errors, prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd,
    latency_sum = latency_sum + excluded.latency_sum, latency_count = latency_count + excluded.latency_count,
    total_tokens = total_tokens + excluded.total_tokens""")

UPSERT_SESSION = BulkInsert(
    "INSERT INTO sessions (session_id, user_id, started_ts, last_ts, events)", 5,
    """ON CONFLICT (session_id) DO UPDATE SET started_ts = min(started_ts, excluded.started_ts),
    last_ts = max(last_ts, excluded.last_ts), events = events + excluded.events""")

UPSERT_USER = BulkInsert(
    "INSERT INTO users (user_id, first_seen, last_seen)", 3,
    """ON CONFLICT (user_id) DO UPDATE SET first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen)""")


def step_key(workflow, step, tool):
    """The rollup key of one workflow step (and the tool it ran)."""
    return f"{workflow}{STEP_SEP}{step}{STEP_SEP}{tool or ''}"


class Batch:
    """The rollup, session and user changes of one batch of event rows."""

    def __init__(self):
        self.rollup = {}
        self.sessions = {}
        self.users = {}

    def fold(self, rows):
        """Add ``rows`` (lists in ``schema.ROW_COLUMNS`` order) to the batch's totals."""
        rollup = self.rollup
        for row in rows:
            ts = row[TS]
            type = row[TYPE]
            day = int(ts // DAY_SECONDS)
            latency = row[LATENCY]
            delta = (1, row[ERROR] or 0, row[PROMPT] or 0, row[COMPLETION] or 0, row[COST] or 0.0,
                     latency or 0.0, 0 if latency is None else 1, row[TOTAL] or 0)
            keys = [("all", day, type, "")]
            columns = row[ROW_OFFSET:]
            for dim, i in DIMENSIONS:
                value = columns[i]
                if value is not None:
                    keys.append((dim, day, type, str(value)))
            if type == "workflow_step_completed":
                workflow, step = columns[WORKFLOW_I], columns[STEP_I]
                if workflow is not None and step is not None:
                    keys.append(("step", day, type, step_key(workflow, step, columns[TOOL_I])))
            user = row[USER]
            if user is not None:
                keys.append(("user", day, ANY_TYPE, user))
            for key in keys:
                acc = rollup.get(key)
                if acc is None:
                    rollup[key] = list(delta)
                else:
                    for j in range(WIDTH):
                        acc[j] += delta[j]
            if user is not None:
                if type == "session_started":
                    # Only at a session's start: the sessions table holds the latest activity, and
                    # touching a random users page for every event would halve the writer's speed.
                    seen = self.users.get(user)
                    if seen is None:
                        self.users[user] = [ts, ts]
                    else:
                        seen[0] = min(seen[0], ts)
                        seen[1] = max(seen[1], ts)
                session = row[SESSION]
                if session is not None:
                    s = self.sessions.get(session)
                    if s is None:
                        self.sessions[session] = [user, ts, ts, 1]
                    else:
                        s[1] = min(s[1], ts)
                        s[2] = max(s[2], ts)
                        s[3] += 1

    def write(self, conn):
        """Apply the batch's upserts on ``conn`` (inside the caller's transaction)."""
        if self.rollup:
            UPSERT_ROLLUP.run(conn, [key + tuple(acc) for key, acc in self.rollup.items()])
        if self.sessions:
            UPSERT_SESSION.run(conn, [(sid,) + tuple(s) for sid, s in self.sessions.items()])
        if self.users:
            UPSERT_USER.run(conn, [(user,) + tuple(seen) for user, seen in self.users.items()])
