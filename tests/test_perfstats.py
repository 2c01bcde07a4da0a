"""Sliding-window request stats with a fake clock."""

import pytest

from bmad.ops.perfstats import BUCKETS, MIN_MS, PerfStats, bucket_of, bucket_value
from tests.support import FakeClock


def test_empty():
    stats = PerfStats(clock=FakeClock()).snapshot()
    assert stats["total_requests"] == 0 and stats["p99_ms"] == 0.0 and stats["by_route"] == {}


def test_counts_averages_and_errors_per_route():
    clock = FakeClock()
    ps = PerfStats(clock=clock)
    for ms in (10, 20, 30):
        ps.record("/a", ms, 200)
    ps.record("/b", 5, 503)
    ps.record("/b", 5, 404)
    ps.record("/b", 5, 499)
    snap = ps.snapshot()
    assert snap["total_requests"] == 6 and snap["window_requests"] == 6
    assert snap["by_route"]["/a"]["count"] == 3 and snap["by_route"]["/a"]["avg_ms"] == 20.0
    assert snap["by_route"]["/a"]["errors"] == 0
    assert snap["by_route"]["/b"]["errors"] == 2  # 5xx and client-gone, not 404
    assert snap["avg_response_ms"] == pytest.approx(12.5)


def test_percentiles_are_within_the_bucket_resolution():
    clock = FakeClock()
    ps = PerfStats(clock=clock)
    for ms in range(1, 1001):  # 1..1000 ms
        ps.record("/r", float(ms), 200)
    snap = ps.snapshot()
    assert snap["p50_ms"] == pytest.approx(500, rel=0.1)
    assert snap["p95_ms"] == pytest.approx(950, rel=0.1)
    assert snap["p99_ms"] == pytest.approx(990, rel=0.1)
    assert snap["p99_ms"] <= 1000  # clamped to the largest seen


def test_single_value_percentiles_are_exact():
    ps = PerfStats(clock=FakeClock())
    ps.record("/r", 3.3, 200)
    snap = ps.snapshot()
    assert snap["p50_ms"] == snap["p95_ms"] == snap["p99_ms"] == 3.3


def test_old_requests_leave_the_window():
    clock = FakeClock(start=1_700_000_000.0)
    ps = PerfStats(clock=clock)
    ps.record("/old", 1000, 200)
    clock.tick(200)
    ps.record("/new", 1, 200)
    assert set(ps.snapshot()["by_route"]) == {"/old", "/new"}
    clock.tick(110)
    snap = ps.snapshot()
    assert set(snap["by_route"]) == {"/new"}
    assert snap["p99_ms"] == 1.0
    assert snap["total_requests"] == 2  # the lifetime count stays
    clock.tick(300)
    assert ps.snapshot()["window_requests"] == 0


def test_slots_are_reused_not_grown():
    clock = FakeClock()
    ps = PerfStats(clock=clock)
    for _ in range(10_000):
        ps.record("/r", 1, 200)
        clock.tick(1)
    assert len(ps._ring) == 90  # 15 minutes of 10 s slots: the history's reach
    assert 290 <= ps.snapshot()["window_requests"] <= 300  # 29 whole slots and the current one


def test_requests_per_minute():
    clock = FakeClock()
    ps = PerfStats(clock=clock)
    for _ in range(60):
        ps.record("/r", 1, 200)
    assert ps.snapshot()["requests_per_minute"] == 60  # under a minute old: not extrapolated
    clock.tick(120)
    for _ in range(60):
        ps.record("/r", 1, 200)
    assert ps.snapshot()["requests_per_minute"] == 60  # 120 over two minutes


def test_routes_are_bounded():
    ps = PerfStats(clock=FakeClock(), max_routes=3)
    for i in range(10):
        ps.record(f"/r{i}", 1, 200)
    routes = ps.snapshot()["by_route"]
    assert len(routes) <= 4 and routes["other"]["count"] == 7


def test_summary():
    ps = PerfStats(clock=FakeClock())
    ps.record("/r", 2, 200)
    ps.record("/r", 4, 200)
    summary = ps.summary()
    assert summary["avg_response_ms"] == 3.0 and 2 <= summary["p95_ms"] <= 4


def test_buckets_cover_the_range():
    assert bucket_of(0) == 0 and bucket_of(MIN_MS) == 0
    assert bucket_of(10 ** 9) == BUCKETS - 1
    for ms in (0.02, 0.5, 1, 7.5, 123, 45_000):
        index = bucket_of(ms)
        assert MIN_MS * 2 ** ((index - 1) / 4) < ms <= MIN_MS * 2 ** (index / 4) * (1 + 1e-9)
        assert bucket_value(index) == pytest.approx(ms, rel=0.2)


def test_history_covers_fifteen_minutes_in_30_second_points():
    clock = FakeClock(start=1_699_999_980.0)  # a multiple of 30 s and 10 s
    ps = PerfStats(clock=clock)
    for minute in range(20):
        for _ in range(minute + 1):
            ps.record("/r", 10.0 * (minute + 1), 500 if minute == 19 else 200)
        clock.tick(60)
    history = ps.history()
    assert history["seconds"] == 900 and history["point_seconds"] == 30
    points = history["points"]
    assert len(points) == 31  # 15 minutes of points, plus the current one just begun
    assert [p["t"] for p in points] == [clock() - 900 + 30 * i for i in range(31)]
    # minute 5 (6 requests of 60 ms) is the oldest minute still inside; each minute filled its first point
    busy = [p for p in points if p["requests"]]
    assert [p["requests"] for p in busy] == list(range(6, 21))
    assert busy[0]["requests_per_minute"] == 12.0 and busy[0]["p50_ms"] == pytest.approx(60, rel=0.1)
    assert busy[-1]["error_rate"] == 1.0 and busy[0]["error_rate"] == 0.0
    assert all(p["p95_ms"] is None for p in points if not p["requests"])
    # the 5-minute snapshot still reads only the last 5 minutes
    assert ps.snapshot()["window_requests"] == sum(range(17, 21))  # minutes 16-19 (minute 15 is 300 s old)


def test_history_starts_at_the_first_point_after_start():
    clock = FakeClock(start=1_699_999_980.0)
    ps = PerfStats(clock=clock)
    clock.tick(65)
    ps.record("/r", 1.0, 200)
    points = ps.history()["points"]
    assert [p["t"] for p in points] == [1_699_999_980, 1_700_000_010, 1_700_000_040]
    assert [p["requests"] for p in points] == [0, 0, 1]
    assert points[-1]["requests_per_minute"] == 6.0  # one request in the 10 s the point has lasted so far
