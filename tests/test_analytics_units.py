"""Unit tests with an injected clock: windows, sessions, normalising events, the recorder's queue."""

from bmad.analytics.realtime import RealTime, SampledWindow, Window
from bmad.analytics.recorder import Recorder, Sessions
from bmad.analytics.schema import EVENT_TYPES, ROW_COLUMNS, normalize
from tests.support import FakeClock


def row_dict(row):
    return {k: v for k, v in zip(ROW_COLUMNS, row) if v is not None}


def test_window_sums_over_the_span_and_forgets_old_buckets():
    w = Window(60, 1)
    w.add(1000.0, 1)
    w.add(1000.5, 1)
    w.add(1030.0, 1)
    assert w.totals(1030.0) == [3]
    assert w.totals(1059.9) == [3]
    assert w.totals(1060.0) == [1]  # bucket 1000 is 60 s old now
    assert w.totals(1090.0) == [0]
    w.add(1120.0, 5)  # reuses bucket 1060's slot (1120 % 60 == 1000 % 60 + 0)
    assert w.totals(1120.0) == [5]


def test_sampled_window_percentile_and_bounded_samples():
    w = SampledWindow(300, 5, samples=10)
    for i in range(1, 101):
        w.observe(1000.0, float(i))
    assert len(w._kept[w._slot(1000.0)]) == 10
    w2 = SampledWindow(300, 5)
    for value in (5.0, 1.0, 3.0, 2.0, 4.0):
        w2.observe(2000.0, value)
    assert w2.percentile(2000.0, 0.95) == 5.0
    assert w2.percentile(2000.0, 0.5) == 3.0
    assert w2.percentile(2400.0, 0.95) is None


def test_realtime_snapshot():
    rt = RealTime()
    rt.api_request(100.0, "a", 0, 10.0)
    rt.user_seen(100.0, "a")
    rt.api_request(150.0, "b", 1, 30.0)
    rt.user_seen(150.0, "b")
    rt.workflow_started(150.0, "run-1")
    rt.workflow_started(150.0, "run-2")
    rt.workflow_ended("run-1")
    rt.llm_spend(150.0, 10, 20, 0.5)
    s = rt.snapshot(155.0)
    assert s["requests_last_minute"] == 2 and s["active_users_5m"] == 2 and s["workflows_running"] == 1
    assert s["error_rate_5m"] == 0.5 and s["avg_response_time_ms_5m"] == 20.0 and s["p95_response_time_ms_5m"] == 30.0
    assert s["tokens_last_hour"] == {"prompt": 10, "completion": 20, "total": 30} and s["cost_usd_last_hour"] == 0.5
    later = rt.snapshot(401.0)  # 'a' last seen 301 s ago, 'b' 251 s ago
    assert later["active_users_5m"] == 1 and later["requests_last_minute"] == 0
    assert rt.snapshot(150.0 + 3601)["tokens_last_hour"]["total"] == 0


def test_sessions_split_at_the_timeout_and_forget_idle_users():
    ids = iter(f"s{i}" for i in range(100))
    s = Sessions(60.0, new_id=lambda ts: next(ids))
    assert s.assign("u", 0.0) == ("s0", True)
    assert s.assign("u", 59.75) == ("s0", False)
    assert s.assign("u", 119.75) == ("s1", True)  # gap of exactly 60 s
    assert s.assign("v", 119.75) == ("s2", True)
    assert s.assign("w", 500.0) == ("s3", True)
    assert list(s.open) == ["w"]  # u and v were idle past the timeout


def test_normalize_maps_aliases_and_keeps_only_safe_extras():
    row = row_dict(normalize("workflow_step_completed", 5.0, {
        "workflow": "greenfield-service", "run_id": "r1", "step": "s1", "tool_id": "analyst", "duration_ms": 12,
        "status": "failed", "tokens": 30, "input_tokens": 10, "output_tokens": 20, "cost": 0.5,
        "prompt": "do not store", "authorization": "Bearer x", "provider_api_key": "sk", "nested": {"a": 1}}))
    assert row == {"ts": 5.0, "type": "workflow_step_completed", "workflow": "greenfield-service", "run_id": "r1",
                   "step": "s1", "tool": "analyst", "latency_ms": 12.0, "outcome": "failed", "error": 1,
                   "prompt_tokens": 10, "completion_tokens": 20, "cost_usd": 0.5, "total_tokens": 30}
    http = row_dict(normalize("api_request", 1.0, {"status": 404, "route": "r" * 1000, "user_id": "u"}))
    assert http["status"] == 404 and http["error"] == 1 and len(http["route"]) == 256
    ok = row_dict(normalize("circuit_state_changed", 1.0, {"provider": "p", "state": "open"}))
    assert ok["outcome"] == "open" and ok["error"] == 0
    huge = row_dict(normalize("cache_hit", 1.0, {f"k{i}": "v" * 100 for i in range(50)}))
    assert "extra" not in huge  # an extra larger than its bound is left out, not truncated into bad JSON


def test_recorder_counts_drops_and_never_raises():
    clock = FakeClock(1000.0)
    rec = Recorder(clock, queue_size=3, session_timeout_seconds=60.0)
    rec.record("cache_hit")
    rec.record("cache_hit")
    rec.record("not-a-type")
    rec.record("api_request", user_id="u", status=200, latency_ms=1)  # + session_started: one fits
    rec.record("api_request", status=object())
    stats = rec.stats()
    assert stats["queue_depth"] == 3
    assert stats["dropped"]["queue_full"] == 2 and stats["dropped"]["invalid_type"] == 1
    assert stats["recorded"] == {"cache_hit": 2, "session_started": 1}
    rec.closed = True
    rec.record("cache_hit")
    assert rec.stats()["dropped"]["closed"] == 1


def test_the_event_vocabulary_has_the_contracted_types():
    assert {"api_request", "tool_execution", "workflow_started", "workflow_step_completed", "workflow_completed",
            "workflow_failed", "provider_request", "provider_failure", "provider_failover", "cache_hit",
            "rate_limited", "circuit_state_changed", "session_started", "auth_failed"} <= EVENT_TYPES
