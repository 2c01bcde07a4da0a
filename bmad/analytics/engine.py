"""The analytics engine as one object: store, recorder, writer, reports; and its wiring into the app.

The composition root builds it when ``analytics.enabled``: it opens
``{data_dir}/analytics.db``; its recorder is the app's event sink; its
``observe`` records ``api_request``/``auth_failed`` for answered requests;
``register_metrics`` adds its counters.
"""

import os
import threading
import time

from ..errors import ConfigError
from ..http.request import KNOWN_METHODS
from . import entities, reports
from .recorder import Recorder
from .retention import RetentionSchedule
from .store import Store
from .writer import JsonlSink, Writer

DB_NAME = "analytics.db"
RESTORE_SESSIONS_LIMIT = 100_000


def settings(config):
    """The ``analytics`` config section, checked; ConfigError naming the key otherwise."""
    section = config.at("analytics") or {}
    for key in ("retention_days", "batch_size", "queue_size", "session_timeout_minutes"):
        if section[key] < 1:
            raise ConfigError(f"config key 'analytics.{key}' must be at least 1, got {section[key]}")
    if section["flush_interval_seconds"] <= 0:
        raise ConfigError("config key 'analytics.flush_interval_seconds' must be greater than 0")
    return section


class Analytics:
    """The running analytics engine of one app.

    Methods for the caller: ``record`` (via ``recorder``), ``overview``,
    ``user``, ``workflow``, ``provider``, ``real_time``, ``flush``,
    ``run_retention``, ``pause_writer``/``resume_writer`` (tests), ``health``,
    ``close``.
    """

    def __init__(self, path, *, clock, logger, retention_days=90, batch_size=500, flush_interval=1.0,
                 queue_size=100_000, session_timeout_seconds=1800.0, jsonl_path=None, new_session_id=None):
        self.clock = clock
        self.logger = logger
        self.retention_days = retention_days
        self.store = Store.open(path, clock)
        sink = None
        if jsonl_path:
            try:
                sink = JsonlSink(jsonl_path)
            except OSError as e:
                self.store.close()
                raise ConfigError(f"config key 'analytics.jsonl_path': cannot append to {jsonl_path} "
                                  f"({e.strerror or e})") from None
        self.recorder = Recorder(clock, queue_size, session_timeout_seconds, new_session_id)
        self._restore_sessions(session_timeout_seconds)
        self.schedule = RetentionSchedule(retention_days, clock)
        self.writer = Writer(self.store, self.recorder.queue, batch_size=batch_size, flush_interval=flush_interval,
                             schedule=self.schedule, logger=logger, sink=sink,
                             on_dropped=self.recorder.count_dropped)
        self._close_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_config(cls, config, *, clock, logger):
        """Build the engine from the app's configuration."""
        s = settings(config)
        return cls(os.path.join(config["data_dir"], DB_NAME), clock=clock, logger=logger,
                   retention_days=s["retention_days"], batch_size=s["batch_size"],
                   flush_interval=s["flush_interval_seconds"], queue_size=s["queue_size"],
                   session_timeout_seconds=s["session_timeout_minutes"] * 60.0, jsonl_path=s["jsonl_path"])

    def _restore_sessions(self, timeout):
        # Sessions still open when the service stopped continue after a restart.
        since = self.clock() - timeout
        rows = self.store.write_conn.execute(
            "SELECT user_id, session_id, started_ts, last_ts FROM sessions WHERE last_ts > ? "
            "ORDER BY last_ts LIMIT ?", (since, RESTORE_SESSIONS_LIMIT)).fetchall()
        for user, session_id, started, last_ts in rows:
            self.recorder.restore_session(user, session_id, started, last_ts)

    def start(self):
        """Start the writer thread (which purges expired events at once, then daily)."""
        self.writer.start()
        return self

    # -- recording from the HTTP pipeline ------------------------------------------------------

    def observe(self, req, status, duration_ms):
        """App observer: ``api_request`` for every recorded or unmatched route, ``auth_failed`` for 401s."""
        route = req.route
        template = route.template if route is not None else "other"
        method = req.method if req.method in KNOWN_METHODS else "other"
        error_type = req.context.get("error_type") if status >= 400 else None
        if route is None or route.record:
            principal = req.principal
            self.recorder.record("api_request", user_id=principal.user if principal else None, route=template,
                                 method=method, status=status, latency_ms=duration_ms, error_type=error_type)
        if status == 401:
            self.recorder.record("auth_failed", route=template, method=method, status=status,
                                 error_type=error_type)

    # -- reports ------------------------------------------------------------------------------

    def real_time(self, workflows_running=None):
        """The in-memory real-time metrics; ``workflows_running`` is the workflow engine's own count
        (it knows about runs resumed after a restart, which never send a second ``workflow_started``)."""
        snapshot = self.recorder.realtime()
        if workflows_running is not None:
            snapshot["workflows_running"] = workflows_running
        return snapshot

    def overview(self, days, workflows_running=None):
        """The aggregate report for the last ``days`` days."""
        real_time = self.real_time(workflows_running)
        with self.store.reading() as conn:
            return reports.overview(conn, self.clock(), days, real_time)

    def user(self, user_id, days):
        """One user's report, or None when the user was never seen."""
        with self.store.reading() as conn:
            return entities.user_report(conn, self.clock(), days, user_id)

    def workflow(self, name, days, step_order=()):
        """One workflow's report, its steps listed in ``step_order`` (the catalog's)."""
        with self.store.reading() as conn:
            return entities.workflow_report(conn, self.clock(), days, name, step_order)

    def provider(self, name, days):
        """One provider's report."""
        with self.store.reading() as conn:
            return entities.provider_report(conn, self.clock(), days, name)

    def own_usage(self, user_id, seconds):
        """One user's requests and their provider usage over the last ``seconds`` (see ``entities.own_usage``)."""
        with self.store.reading() as conn:
            return entities.own_usage(conn, self.clock() - seconds, user_id)

    # -- control -------------------------------------------------------------------------------

    def flush(self, timeout=10.0):
        """Wait until everything recorded so far is committed; True when it is."""
        return self.writer.request("flush", timeout)

    def run_retention(self, timeout=30.0):
        """Run the retention purge now and wait for it to finish."""
        return self.writer.request("purge", timeout)

    def pause_writer(self, timeout=10.0):
        """Stop the writer taking events (tests fill the queue this way); ``resume_writer`` undoes it."""
        return self.writer.request("pause", timeout)

    def resume_writer(self):
        """Let a paused writer continue."""
        self.writer.resume()

    def stats(self):
        """Recorder and writer counts."""
        s = self.recorder.stats()
        s.update(written=self.writer.written, batches=self.writer.batches, writer_alive=self.writer.alive)
        return s

    def health(self):
        """The ``analytics`` entry of ``/bmad/health``."""
        s = self.stats()
        ok = s["writer_alive"] and self.writer.last_batch_ok
        body = {"status": "ok" if ok else "degraded", "writer_alive": s["writer_alive"],
                "queue_depth": s["queue_depth"], "queue_size": s["queue_size"],
                "recorded": sum(s["recorded"].values()), "written": s["written"],
                "dropped": sum(s["dropped"].values()), "dropped_by_reason": s["dropped"],
                "last_purge": reports.iso(self.schedule.last_run)}
        if self.writer.last_error:
            body["last_error"] = self.writer.last_error[:200]
        return body

    def close(self, timeout=30.0):
        """Stop taking events, commit everything queued, and close the database (idempotent)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        began = time.monotonic()
        self.writer.resume()
        # Refuse (and count) new events first, so that the stop marker is the last thing queued.
        self.recorder.closed = True
        flushed = False
        if self.writer.alive:
            flushed = self.writer.request("stop", timeout)
            self.writer.join(max(0.0, timeout - (time.monotonic() - began)))
        s = self.stats()
        self.logger.info("analytics closed", flushed=flushed, written=s["written"],
                         dropped=sum(s["dropped"].values()), seconds=round(time.monotonic() - began, 3))
        if not self.writer.alive:
            self.store.close()


def register_metrics(metrics, engine):
    """The analytics counters and queue gauge; the counts live in the recorder (cheap on the request path)
    and are copied in at scrape time."""
    events = metrics.collected_counter("bmad_analytics_events_total", "Analytics events accepted onto the queue.",
                                       ("type",))
    dropped = metrics.collected_counter(
        "bmad_analytics_events_dropped_total",
        "Analytics events lost: queue full, write error, unknown type or after close.", ("reason",))
    depth = metrics.gauge("bmad_analytics_queue_depth", "Analytics events waiting for the writer.")

    def collect():
        s = engine.recorder.stats()
        for key, value in s["recorded"].items():
            events.set(value, type=key)
        for key, value in s["dropped"].items():
            dropped.set(value, reason=key)
        depth.set(s["queue_depth"])

    metrics.add_collector(collect)

