"""Runs, their steps and their artifacts in ``{data_dir}/runs.db``.

All writes go through the database's single writer (see ``db.py``); a step's
result and its artifact are written by one job, so they commit together or
not at all. Reads return plain dicts shaped like the API's ``run`` object.

Methods for the caller: ``RunStore.open(path, logger)``, ``create``,
``mark``, ``wait_for_approval``, ``step_started``, ``finish_step``, ``skip_pending``,
``reset_running_steps``, ``approve``, ``cancel_idle``, ``get``, ``load``, ``artifact``, ``artifacts``,
``list``, ``unfinished``, ``close``.
"""

import json

from .db import Database

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
RUN_STATES = ("queued", "running", "waiting_approval", "succeeded", "failed", "cancelled")
STEP_STATES = ("pending", "running", "succeeded", "failed", "cancelled", "skipped")
STEP_FIELDS = ("provider", "model", "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms", "attempts",
               "error")
RUN_COLUMNS = ("run_id", "workflow", "title", "user", "state", "model", "approvals", "created_at", "started_at",
               "finished_at", "error", "error_type")


def _create_runs(conn):
    conn.execute("""CREATE TABLE runs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL UNIQUE, workflow TEXT NOT NULL,
        title TEXT, user TEXT NOT NULL, state TEXT NOT NULL, model TEXT, approvals INTEGER NOT NULL,
        inputs TEXT NOT NULL, definition TEXT NOT NULL, approved TEXT NOT NULL DEFAULT '[]',
        created_at REAL NOT NULL, started_at REAL, finished_at REAL, error TEXT, error_type TEXT)""")
    conn.execute("CREATE INDEX runs_user ON runs(user, seq)")
    conn.execute("CREATE INDEX runs_workflow ON runs(workflow, seq)")
    conn.execute("CREATE INDEX runs_state ON runs(state, seq)")


def _create_steps(conn):
    conn.execute("""CREATE TABLE steps (
        run_id TEXT NOT NULL REFERENCES runs(run_id), step_id TEXT NOT NULL, position INTEGER NOT NULL,
        tool TEXT NOT NULL, state TEXT NOT NULL, provider TEXT, model TEXT, prompt_tokens INTEGER,
        completion_tokens INTEGER, cost_usd REAL, latency_ms REAL, attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT, report TEXT, started_at REAL, finished_at REAL,
        PRIMARY KEY (run_id, step_id)) WITHOUT ROWID""")


def _create_artifacts(conn):
    conn.execute("""CREATE TABLE artifacts (
        run_id TEXT NOT NULL REFERENCES runs(run_id), name TEXT NOT NULL, produced_by TEXT NOT NULL,
        content TEXT NOT NULL, created_at REAL NOT NULL,
        PRIMARY KEY (run_id, name)) WITHOUT ROWID""")


def _add_approval_wait(conn):
    # Time at an approval gate is the approver's, not the run's: kept apart from its duration.
    conn.execute("ALTER TABLE runs ADD COLUMN waiting_since REAL")
    conn.execute("ALTER TABLE runs ADD COLUMN approval_wait REAL NOT NULL DEFAULT 0")


# Ordered and append-only (the names are those recorded in schema_migrations): a released migration is never
# edited, only followed by a new one.
MIGRATIONS = [(fn.__name__, fn) for fn in (_create_runs, _create_steps, _create_artifacts, _add_approval_wait)]


def _step_view(row):
    step = {"id": row["step_id"], "tool": row["tool"], "state": row["state"]}
    for name in STEP_FIELDS:
        step[name] = row[name]
    step["report"] = json.loads(row["report"]) if row["report"] else None
    step["started_at"] = row["started_at"]
    step["finished_at"] = row["finished_at"]
    return step


def _run_view(row):
    run = {name: row[name] for name in RUN_COLUMNS}
    run["approvals"] = bool(run["approvals"])
    return run


def _read_run(conn, run_id):
    """The API view of one run read on ``conn`` (see ``RunStore.get``), or None."""
    row = conn.execute(f"SELECT {', '.join(RUN_COLUMNS)}, waiting_since, approval_wait FROM runs WHERE run_id = ?",
                       (run_id,)).fetchone()
    if row is None:
        return None
    run = _run_view(row)
    run["waiting_since"] = row["waiting_since"]
    run["approval_wait"] = row["approval_wait"]
    run["steps"] = [_step_view(r) for r in conn.execute(
        "SELECT * FROM steps WHERE run_id = ? ORDER BY position", (run_id,))]
    run["artifacts"] = [dict(r) for r in conn.execute(
        "SELECT name, produced_by, length(content) AS chars FROM artifacts WHERE run_id = ? "
        "ORDER BY created_at, name", (run_id,))]
    return run


class RunStore:
    """Durable runs: the engine writes through it, the handlers read through it."""

    def __init__(self, db):
        self.db = db

    @classmethod
    def open(cls, path, logger):
        """Open (and migrate) the runs database at ``path``."""
        return cls(Database.open(str(path), MIGRATIONS, logger))

    def close(self):
        """Commit pending writes and close the database."""
        self.db.close()

    # -- writes ---------------------------------------------------------------------------------

    def create(self, run, definition, inputs, state="queued"):
        """Insert a new run and its pending steps; returns once committed."""
        def job(conn):
            conn.execute(
                "INSERT INTO runs (run_id, workflow, title, user, state, model, approvals, inputs, definition, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run["run_id"], run["workflow"], run["title"], run["user"], state, run["model"],
                 int(run["approvals"]), json.dumps(inputs), json.dumps(definition), run["created_at"]))
            conn.executemany(
                "INSERT INTO steps (run_id, step_id, position, tool, state) VALUES (?, ?, ?, ?, 'pending')",
                [(run["run_id"], step["id"], i, step["tool"]) for i, step in enumerate(definition["steps"])])
        self.db.write(job)

    def mark(self, run_id, state, *, started_at=None, finished_at=None, error=None, error_type=None, wait=True):
        """Set a run's state (and, when given, when it started or finished and why it failed)."""
        def job(conn):
            conn.execute("UPDATE runs SET state = ?, started_at = COALESCE(started_at, ?), "
                         "finished_at = COALESCE(?, finished_at), error = COALESCE(?, error), "
                         "error_type = COALESCE(?, error_type) WHERE run_id = ?",
                         (state, started_at, finished_at, error, error_type, run_id))
        return self.db.write(job, wait=wait)

    def wait_for_approval(self, run_id, ts):
        """Park a run at its approval gate from ``ts`` on."""
        def job(conn):
            conn.execute("UPDATE runs SET state = 'waiting_approval', waiting_since = ? WHERE run_id = ?",
                         (ts, run_id))
        self.db.write(job)

    def step_started(self, run_id, step_id, ts):
        """Record that a step began (not waited for: losing it in a crash changes nothing)."""
        def job(conn):
            conn.execute("UPDATE steps SET state = 'running', started_at = ? WHERE run_id = ? AND step_id = ?",
                         (ts, run_id, step_id))
        self.db.write(job, wait=False)

    def finish_step(self, run_id, step_id, state, result, finished_at, artifact=None):
        """Store a step's outcome and its artifact ``(name, text)`` in one transaction."""
        def job(conn):
            conn.execute(
                "UPDATE steps SET state = ?, provider = ?, model = ?, prompt_tokens = ?, completion_tokens = ?, "
                "cost_usd = ?, latency_ms = ?, attempts = ?, error = ?, report = ?, finished_at = ? "
                "WHERE run_id = ? AND step_id = ?",
                (state, result.get("provider"), result.get("model"), result.get("prompt_tokens"),
                 result.get("completion_tokens"), result.get("cost_usd"), result.get("latency_ms"),
                 result.get("attempts", 0), result.get("error"),
                 json.dumps(result["report"]) if result.get("report") else None, finished_at, run_id, step_id))
            if artifact is not None:
                conn.execute("INSERT OR REPLACE INTO artifacts (run_id, name, produced_by, content, created_at) "
                             "VALUES (?, ?, ?, ?, ?)", (run_id, artifact[0], step_id, artifact[1], finished_at))
        self.db.write(job)

    def skip_pending(self, run_id):
        """Mark every step that never ran as skipped (the run ended first)."""
        def job(conn):
            conn.execute("UPDATE steps SET state = 'skipped' WHERE run_id = ? AND state IN ('pending', 'running')",
                         (run_id,))
        self.db.write(job)

    def reset_running_steps(self):
        """After a restart: steps caught mid-call never succeeded, so they start again from pending."""
        def job(conn):
            conn.execute("UPDATE steps SET state = 'pending', started_at = NULL WHERE state = 'running'")
        self.db.write(job)

    def approve(self, run_id, step_ids, ts):
        """Record the gates a caller approved at ``ts`` and queue the run; False unless it was waiting."""
        def job(conn):
            row = conn.execute("SELECT approved FROM runs WHERE run_id = ? AND state = 'waiting_approval'",
                               (run_id,)).fetchone()
            if row is None:
                return False
            approved = sorted(set(json.loads(row["approved"])) | set(step_ids))
            conn.execute("UPDATE runs SET approved = ?, state = 'queued', approval_wait = approval_wait + "
                         "max(0, ? - COALESCE(waiting_since, ?)), waiting_since = NULL WHERE run_id = ?",
                         (json.dumps(approved), ts, ts, run_id))
            return True
        return self.db.write(job)

    def cancel_idle(self, run_id, ts, before_commit=None):
        """Cancel a run nobody is executing, skipping its unfinished steps; False when it was already final.

        ``before_commit(run)`` is called with the cancelled run inside the
        transaction, so what it counts is counted before anyone can read the
        final state."""
        def job(conn):
            changed = conn.execute(
                "UPDATE runs SET state = 'cancelled', finished_at = ?, error = 'cancelled', error_type = 'cancelled', "
                "approval_wait = approval_wait + max(0, ? - COALESCE(waiting_since, ?)), waiting_since = NULL "
                "WHERE run_id = ? AND state IN ('queued', 'running', 'waiting_approval')",
                (ts, ts, ts, run_id)).rowcount
            if changed:
                conn.execute("UPDATE steps SET state = 'skipped' WHERE run_id = ? AND state IN ('pending', 'running')",
                             (run_id,))
                if before_commit is not None:
                    before_commit(_read_run(conn, run_id))
            return bool(changed)
        return self.db.write(job)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, run_id):
        """The API view of a run (steps, artifact names and sizes, totals), or None."""
        return self.db.read(lambda conn: _read_run(conn, run_id))

    def load(self, run_id):
        """Everything needed to execute a run: row, inputs, definition, approved gates, step states, artifacts."""
        def query(conn):
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            run = _run_view(row)
            run["inputs"] = json.loads(row["inputs"])
            run["definition"] = json.loads(row["definition"])
            run["approved"] = set(json.loads(row["approved"]))
            run["step_states"] = {r["step_id"]: r["state"] for r in conn.execute(
                "SELECT step_id, state FROM steps WHERE run_id = ?", (run_id,))}
            run["artifacts"] = {r["name"]: r["content"] for r in conn.execute(
                "SELECT name, content FROM artifacts WHERE run_id = ?", (run_id,))}
            return run
        return self.db.read(query)

    def artifact(self, run_id, name):
        """The text of one artifact, or None."""
        def query(conn):
            row = conn.execute("SELECT content FROM artifacts WHERE run_id = ? AND name = ?",
                               (run_id, name)).fetchone()
            return row["content"] if row else None
        return self.db.read(query)

    def artifacts(self, run_id):
        """Every artifact of a run as ``(name, text, created_at)``, in the order they were produced."""
        def query(conn):
            return [(r["name"], r["content"], r["created_at"]) for r in conn.execute(
                "SELECT name, content, created_at FROM artifacts WHERE run_id = ? ORDER BY created_at, name",
                (run_id,))]
        return self.db.read(query)

    def owner(self, run_id):
        """``(user, state)`` of a run, or None."""
        def query(conn):
            row = conn.execute("SELECT user, state FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            return (row["user"], row["state"]) if row else None
        return self.db.read(query)

    def list(self, *, workflow=None, state=None, user=None, limit=20, before_seq=None):
        """Runs newest first (summaries, no steps) and the ``seq`` to continue after, or None."""
        where, args = [], []
        for column, value in (("workflow", workflow), ("state", state), ("user", user)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if before_seq is not None:
            where.append("seq < ?")
            args.append(before_seq)
        sql = (f"SELECT seq, {', '.join(RUN_COLUMNS)} FROM runs"
               f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY seq DESC LIMIT ?")

        def query(conn):
            rows = conn.execute(sql, (*args, limit + 1)).fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            return [_run_view(r) for r in rows], (rows[-1]["seq"] if more else None)
        return self.db.read(query)

    def unfinished(self):
        """Ids and states of runs not in a final state, oldest first."""
        def query(conn):
            return [(r["run_id"], r["state"]) for r in conn.execute(
                "SELECT run_id, state FROM runs WHERE state NOT IN ('succeeded', 'failed', 'cancelled') "
                "ORDER BY seq")]
        return self.db.read(query)

    def counts(self):
        """How many runs are in each state."""
        def query(conn):
            return {r[0]: r[1] for r in conn.execute("SELECT state, count(*) FROM runs GROUP BY state")}
        return self.db.read(query)
