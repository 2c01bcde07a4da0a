"""The event store: retention keeps rollups, restarts keep data, full queues and full disks count drops."""

import json
import os
import sqlite3

from tests.analytics_support import DAY, NO_LIMITS, at, db_rows, settle
from tests.support import FakeClock

T0 = 19700 * DAY + 36000


def test_database_file_is_wal_and_migrations_are_recorded(start_app, client_for, tmp_path):
    service = start_app(NO_LIMITS)
    path = service.app.analytics.store.path
    assert path == os.path.join(str(tmp_path / "data"), "analytics.db")
    assert db_rows(service, "PRAGMA journal_mode") == [("wal",)]
    names = [r[0] for r in db_rows(service, "SELECT name FROM schema_migrations ORDER BY name")]
    assert names == ["0001_events", "0002_daily_rollup", "0003_sessions_and_users", "0004_total_tokens",
                     "0005_index_sessions_by_start", "0006_index_for_reports", "0007_roll_up_steps"]
    indexes = {r[0] for r in db_rows(service, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"events_ts", "events_type_ts", "events_user_type_ts", "events_workflow_type_ts",
            "events_provider_type_ts"} <= indexes
    busy = service.app.analytics.store.write_conn.execute("PRAGMA busy_timeout").fetchone()[0]
    assert busy >= 1000


def test_restart_keeps_data_and_does_not_reapply_migrations(start_app, client_for):
    clock = FakeClock(T0)
    first = start_app(NO_LIMITS, clock=clock)
    client = client_for(first, {"X-User-ID": "dora"})
    for _ in range(7):
        assert client.get("/bmad/tools").status == 200
    settle(client, first)
    applied = db_rows(first, "SELECT name, applied_at FROM schema_migrations ORDER BY name")
    first.stop(drain_seconds=1)

    clock.tick(3600)
    second = start_app(NO_LIMITS, clock=clock)
    assert db_rows(second, "SELECT name, applied_at FROM schema_migrations ORDER BY name") == applied
    client2 = client_for(second, {"X-User-ID": "dora"})
    assert client2.get("/bmad/tools").status == 200
    settle(client2, second)
    report = client2.get("/bmad/analytics/user/dora").json["user"]
    assert report["requests"] == 8
    assert report["sessions"]["count"] == 2  # an hour apart: a new session after the restart


def test_retention_purge_keeps_rollups_users_and_recent_events(start_app, client_for):
    clock = FakeClock(T0 - 5 * DAY)
    service = start_app({**NO_LIMITS, "analytics": {"retention_days": 2}}, clock=clock)
    rec = service.app.events.record
    for offset in (-5, -3, -1, 0):
        at(clock, T0 + offset * DAY)
        rec("api_request", user_id="old" if offset < -2 else "new", route="/bmad/tools", status=200, latency_ms=1)
        rec("provider_request", provider="offline", latency_ms=2, prompt_tokens=3, completion_tokens=4)
    client = client_for(service)
    settle(client, service)  # the clock passed the daily due time: the writer purged on its own
    assert service.app.analytics.run_retention()  # and an explicit run finds nothing more

    cutoff = T0 - 2 * DAY
    assert db_rows(service, "SELECT COUNT(*) FROM events WHERE ts < ?", (cutoff,)) == [(0,)]
    assert db_rows(service, "SELECT COUNT(*) FROM events WHERE type = 'api_request'") == [(2,)]
    rolled = db_rows(service, "SELECT day, SUM(events) FROM daily_rollup WHERE dim = 'all' AND type = 'api_request' "
                              "GROUP BY day ORDER BY day")
    assert rolled == [(19695, 1), (19697, 1), (19699, 1), (19700, 1)]
    assert db_rows(service, "SELECT SUM(prompt_tokens) FROM daily_rollup WHERE dim = 'provider'") == [(12,)]
    assert db_rows(service, "SELECT user_id FROM users ORDER BY user_id") == [("new",), ("old",)]
    assert db_rows(service, "SELECT COUNT(*) FROM sessions WHERE user_id = 'old'") == [(0,)]
    # the reports still answer from the rollup, and ?days cannot go past retention
    a = client.get("/bmad/analytics?days=2").json["analytics"]
    assert a["usage"]["requests"] == 2 and a["providers"]["prompt_tokens"] == 6
    bad = client.get("/bmad/analytics?days=3")
    assert bad.status == 400 and "days" in bad.json["error"]["message"]


def test_retention_runs_at_startup_and_then_daily(start_app, client_for):
    clock = FakeClock(T0)
    first = start_app({**NO_LIMITS, "analytics": {"retention_days": 1}}, clock=clock)
    first.app.events.record("api_request", route="/x", status=200, latency_ms=1)
    assert first.app.analytics.flush()
    first.stop(drain_seconds=1)

    clock.tick(2 * DAY)
    second = start_app({**NO_LIMITS, "analytics": {"retention_days": 1}}, clock=clock)
    assert second.app.analytics.flush()  # the startup purge runs before the writer's first batch
    assert db_rows(second, "SELECT COUNT(*) FROM events") == [(0,)]
    health = client_for(second).get("/bmad/health").json["checks"]["analytics"]
    assert health["last_purge"] is not None

    second.app.events.record("api_request", route="/x", status=200, latency_ms=1)
    assert second.app.analytics.flush()
    clock.tick(DAY + 1)
    assert second.app.analytics.flush()  # due again a day later: the writer purges between batches
    assert db_rows(second, "SELECT COUNT(*) FROM events") == [(0,)]


def test_queue_full_drops_are_counted_and_exposed(start_app, client_for):
    service = start_app({**NO_LIMITS, "analytics": {"queue_size": 5}})
    engine = service.app.analytics
    assert engine.pause_writer()
    try:
        for i in range(8):
            service.app.events.record("cache_hit", route="/v1/chat/completions")
        health = client_for(service).get("/bmad/health").json["checks"]["analytics"]
        assert health["queue_depth"] == 5 and health["queue_size"] == 5
        assert health["dropped"] == 3 and health["dropped_by_reason"]["queue_full"] == 3
        metrics = client_for(service).get("/bmad/metrics").body.decode()
        assert 'bmad_analytics_events_dropped_total{reason="queue_full"} 3.0' in metrics
        assert 'bmad_analytics_events_total{type="cache_hit"} 5.0' in metrics
        assert "bmad_analytics_queue_depth 5.0" in metrics
    finally:
        engine.resume_writer()
    assert engine.flush()
    assert db_rows(service, "SELECT COUNT(*) FROM events WHERE type = 'cache_hit'") == [(5,)]


def test_a_full_disk_drops_batches_and_recording_resumes(start_app, client_for):
    service = start_app(NO_LIMITS)
    engine = service.app.analytics
    conn = engine.store.write_conn
    assert engine.pause_writer()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk full"
    engine.resume_writer()
    for i in range(300):
        service.app.events.record("tool_execution", tool=f"tool-{i}", latency_ms=1, status="succeeded")
    assert engine.flush()
    health = client_for(service).get("/bmad/health").json["checks"]["analytics"]
    assert health["status"] == "degraded" and health["dropped_by_reason"]["write_error"] == 300
    assert "full" in health["last_error"]

    assert engine.pause_writer()
    conn.execute("PRAGMA max_page_count = 1073741823")
    engine.resume_writer()
    service.app.events.record("tool_execution", tool="after", latency_ms=1, status="succeeded")
    assert engine.flush()
    assert db_rows(service, "SELECT tool FROM events WHERE type = 'tool_execution'") == [("after",)]
    assert client_for(service).get("/bmad/health").json["checks"]["analytics"]["status"] == "ok"


def test_events_never_raise_and_unknown_fields_go_to_extra(start_app, client_for):
    service = start_app(NO_LIMITS)
    rec = service.app.events.record
    rec("no_such_type", user_id="x")
    rec("api_request", status="weird", latency_ms="fast", user_id=12345, prompt_tokens=float("nan"),
        route=["not", "text"], thing=object(), cache_key_hash="abc", attempt=2)
    rec("tool_execution", tool="analyst", prompt="TOP-SECRET-PROMPT", messages=[{"content": "hi"}],
        api_key="sk-never-stored", output="MODEL-ANSWER", input_chars=1234, status="succeeded")
    assert service.app.analytics.flush()
    rows = db_rows(service, "SELECT type, user_id, status, outcome, latency_ms, route, extra FROM events "
                            "WHERE type IN ('api_request', 'tool_execution') ORDER BY id")
    assert rows[0][:6] == ("api_request", "12345", None, "weird", None, None)
    assert json.loads(rows[0][6]) == {"cache_key_hash": "abc", "attempt": 2}
    assert json.loads(rows[1][6]) == {"input_chars": 1234}
    assert service.app.analytics.stats()["dropped"]["invalid_type"] == 1
    with open(service.app.analytics.store.path, "rb") as f:
        data = f.read()
    wal = service.app.analytics.store.path + "-wal"
    if os.path.exists(wal):
        with open(wal, "rb") as f:
            data += f.read()
    for secret in (b"TOP-SECRET-PROMPT", b"sk-never-stored", b"MODEL-ANSWER"):
        assert secret not in data


def test_jsonl_sink_appends_every_event(start_app, client_for, tmp_path):
    sink = tmp_path / "events.jsonl"
    service = start_app({**NO_LIMITS, "analytics": {"jsonl_path": str(sink)}})
    service.app.events.record("cache_hit", route="/v1/chat/completions", saved_ms=12)
    service.app.events.record("provider_request", provider="offline", model="offline", prompt_tokens=1,
                              completion_tokens=2, cost_usd=0.0, latency_ms=3.5, prompt="never")
    assert service.app.analytics.flush()
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [e["type"] for e in lines] == ["cache_hit", "provider_request"]
    assert lines[0]["extra"] == {"saved_ms": 12} and lines[1]["completion_tokens"] == 2
    assert "never" not in sink.read_text()


def test_disabled_analytics_answers_503_and_creates_no_database(start_app, client_for, tmp_path):
    service = start_app({**NO_LIMITS, "analytics": {"enabled": False}})
    service.app.events.record("api_request", route="/x")
    client = client_for(service)
    resp = client.get("/bmad/analytics")
    assert resp.status == 503 and resp.json["error"]["type"] == "analytics_disabled"
    assert not os.path.exists(tmp_path / "data" / "analytics.db")
    assert "analytics" not in client.get("/bmad/health").json["checks"]


def test_bad_analytics_config_is_a_clear_error(make_config, tmp_path):
    import pytest
    from bmad.app import build_app
    from bmad.errors import ConfigError
    for data, key in [({"analytics": {"batch_size": 0}}, "analytics.batch_size"),
                      ({"analytics": {"flush_interval_seconds": 0}}, "analytics.flush_interval_seconds"),
                      ({"analytics": {"retention_days": "90"}}, "analytics.retention_days")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            build_app(make_config(data), environ={})
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    with pytest.raises(ConfigError, match="analytics database"):
        build_app(make_config({"data_dir": str(blocked)}), environ={})


def test_reads_use_read_only_connections(start_app):
    service = start_app(NO_LIMITS)
    with service.app.analytics.store.reading() as conn:
        try:
            conn.execute("DELETE FROM events")
        except sqlite3.OperationalError as e:
            assert "readonly" in str(e)
        else:
            raise AssertionError("a report connection could write")


def test_a_new_migration_folds_existing_step_events_into_the_rollup(tmp_path):
    from bmad.analytics.store import MIGRATIONS, migrate
    conn = sqlite3.connect(str(tmp_path / "old.db"), isolation_level=None)
    migrate(conn, migrations=MIGRATIONS[:6])  # a database from before 0007
    conn.execute("INSERT INTO events (ts, type, workflow, step, tool, error, latency_ms, total_tokens) VALUES "
                 "(?, 'workflow_step_completed', 'story-cycle', 'draft', 'sm', 0, 10.0, 5), "
                 "(?, 'workflow_step_completed', 'story-cycle', 'draft', 'sm', 1, 30.0, NULL)", (T0, T0 + 1))
    assert migrate(conn) == ["0007_roll_up_steps"]
    rows = conn.execute("SELECT day, key, events, errors, latency_sum, latency_count, total_tokens FROM daily_rollup "
                        "WHERE dim = 'step'").fetchall()
    assert rows == [(19700, "story-cycle\x1fdraft\x1fsm", 2, 1, 40.0, 2, 5)]
    assert migrate(conn) == []
    conn.close()
