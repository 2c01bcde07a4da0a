"""DAU/MAU at the 30-day edge and session splitting at the timeout boundary."""

from tests.analytics_support import DAY, NO_LIMITS, at, db_rows, settle
from tests.support import FakeClock

TODAY = 19700
T0 = TODAY * DAY + 36000  # 10:00 UTC


def test_dau_and_mau_count_distinct_users_at_the_30_day_edge(start_app, client_for):
    clock = FakeClock(T0 - 40 * DAY)
    service = start_app(NO_LIMITS, clock=clock)
    rec = service.app.events.record
    for day_offset, user in [(-30, "outside"), (-29, "edge"), (-10, "mid"), (-10, "mid"), (-1, "yesterday"),
                             (0, "today1"), (0, "today2"), (0, "edge")]:
        at(clock, T0 + day_offset * DAY)
        rec("api_request", user_id=user, route="/bmad/tools", method="GET", status=200, latency_ms=1)
    client = client_for(service)
    settle(client, service)
    bi = client.get("/bmad/analytics?days=30").json["analytics"]["business_intelligence"]
    assert bi["dau"] == 3  # today1, today2, edge
    assert bi["mau"] == 5  # edge, mid, yesterday, today1, today2 - not 'outside' (30 days ago)
    assert bi["dau_mau_ratio"] == 0.6
    by_date = {d["date"]: d["users"] for d in bi["daily_active_users"]}
    assert sum(by_date.values()) == 6  # edge twice (two days), mid once (its day), yesterday, today1, today2
    wide = client.get("/bmad/analytics?days=31").json["analytics"]
    assert wide["usage"]["users"] == 6 and wide["business_intelligence"]["mau"] == 5


def test_sessions_split_exactly_at_the_timeout(start_app, client_for):
    clock = FakeClock(T0)
    service = start_app({**NO_LIMITS, "analytics": {"session_timeout_minutes": 1}}, clock=clock)
    rec = service.app.events.record

    def hit(ts):
        at(clock, ts)
        rec("api_request", user_id="u1", route="/bmad/tools", method="GET", status=200, latency_ms=1)

    hit(T0)
    hit(T0 + 59.75)            # gap under 60 s: same session
    hit(T0 + 119.75)           # gap of exactly 60 s: a new session
    hit(T0 + 200)              # gap 80.25 s: a new session
    hit(T0 + 230)              # same as the previous one
    client = client_for(service)
    settle(client, service)
    rows = db_rows(service, "SELECT session_id, ts FROM events WHERE user_id = 'u1' AND type = 'api_request' "
                            "ORDER BY ts")
    ids = [r[0] for r in rows]
    assert ids[0] == ids[1] and ids[1] != ids[2] and ids[2] != ids[3] and ids[3] == ids[4]
    assert len(set(ids)) == 3
    started = db_rows(service, "SELECT COUNT(*) FROM events WHERE type = 'session_started' AND user_id = 'u1'")
    assert started == [(3,)]
    u = client.get("/bmad/analytics/user/u1").json["user"]
    # durations 59.75, 0 and 30 seconds
    assert u["sessions"] == {"count": 3, "avg_duration_seconds": round((59.75 + 0 + 30) / 3, 3)}


def test_sessions_are_per_user_and_survive_a_restart(start_app, client_for, make_config):
    clock = FakeClock(T0)
    service = start_app(NO_LIMITS, clock=clock)
    service.app.events.record("api_request", user_id="a", route="/x", status=200, latency_ms=1)
    service.app.events.record("api_request", user_id="b", route="/x", status=200, latency_ms=1)
    service.stop(drain_seconds=1)
    clock.tick(600)  # within the 30-minute timeout
    again = start_app(NO_LIMITS, clock=clock)
    again.app.events.record("api_request", user_id="a", route="/x", status=200, latency_ms=1)
    settle(client_for(again), again)
    rows = db_rows(again, "SELECT user_id, COUNT(DISTINCT session_id) FROM events WHERE type = 'api_request' "
                          "GROUP BY user_id ORDER BY user_id")
    assert rows == [("a", 1), ("b", 1)]
    assert db_rows(again, "SELECT events FROM sessions WHERE user_id = 'a'") == [(3,)]  # session_started + 2
