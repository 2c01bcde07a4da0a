"""Every report's numbers against a hand-computed fixture of events with known timestamps."""

import pytest

from tests.analytics_support import DAY, NO_LIMITS, at, settle, with_providers
from tests.support import FakeClock

A = 19670  # a UTC day number: 2023-11-09
B = A + 3  # 2023-11-12, "today"
A0, B0 = A * DAY, B * DAY
NOW = B0 + 43300


def record_fixture(app, clock):
    rec = app.events.record
    steps = [
        (A0 + 3600, "api_request", dict(user_id="alice", route="/bmad/tools", method="GET", status=200, latency_ms=10)),
        (A0 + 3660, "api_request", dict(user_id="alice", route="/bmad/tools", method="GET", status=200, latency_ms=20)),
        (A0 + 3720, "api_request", dict(user_id="alice", route="/bmad/tools", method="GET", status=200, latency_ms=30)),
        (A0 + 3730, "tool_execution", dict(user_id="alice", tool="analyst", latency_ms=100, tokens=30,
                                           cost_usd=0.01, status="success", provider="openai-primary")),
        (A0 + 3740, "workflow_started", dict(user_id="alice", workflow="greenfield-service", run_id="r1")),
        (A0 + 3750, "workflow_step_completed", dict(user_id="alice", workflow="greenfield-service", run_id="r1",
                                                    step="prd", tool="analyst", latency_ms=100, status="succeeded",
                                                    prompt_tokens=10, completion_tokens=20, cost_usd=0.01)),
        (A0 + 3760, "workflow_step_completed", dict(user_id="alice", workflow="greenfield-service", run_id="r1",
                                                    step="brief", tool="pm", duration_ms=200, status="failed")),
        (A0 + 3770, "workflow_failed", dict(user_id="alice", workflow="greenfield-service", run_id="r1",
                                            duration_ms=1000, error_type="step_failed")),
        (A0 + 4000, "api_request", dict(user_id="bob", route="/bmad/tools", method="GET", status=500, latency_ms=40,
                                        error_type="internal_error")),
        (A0 + 4010, "tool_execution", dict(user_id="bob", tool="pm", latency_ms=300, status="failed",
                                           error_type="timeout")),
        (A0 + 4020, "provider_request", dict(provider="openai-primary", model="gpt-4o-mini", latency_ms=50,
                                             prompt_tokens=10, completion_tokens=20, cost_usd=0.01)),
        (A0 + 4030, "provider_request", dict(provider="openai-primary", model="gpt-4o-mini", latency_ms=150,
                                             prompt_tokens=5, completion_tokens=5, cost_usd=0.002)),
        # a failed attempt: the router records it as a provider_request flagged as an error, and a provider_failure
        (A0 + 4040, "provider_request", dict(provider="claude", model="claude-3-5-haiku-latest", status="error",
                                             latency_ms=30000)),
        (A0 + 4040, "provider_failure", dict(provider="claude", error_type="timeout", status=504)),
        (A0 + 4050, "provider_failover", dict(from_provider="claude", to_provider="openai-primary")),
        (A0 + 4060, "circuit_state_changed", dict(provider="claude", **{"from": "closed", "to": "open"})),
        (B0 + 43200, "workflow_started", dict(workflow="greenfield-service", run_id="r2")),
        (B0 + 43210, "workflow_completed", dict(workflow="greenfield-service", run_id="r2", duration_ms=3000)),
        (NOW - 30, "api_request", dict(user_id="alice", route="/bmad/workflows/{workflow_id}", method="GET",
                                       status=404, latency_ms=5, error_type="not_found")),
        (NOW - 10, "api_request", dict(user_id="carol", route="/bmad/tools", method="GET", status=200, latency_ms=15)),
    ]
    for ts, type, fields in steps:
        at(clock, ts)
        rec(type, **fields)
    at(clock, NOW)


@pytest.fixture
def fixture_service(start_app, client_for):
    clock = FakeClock(A0 + 60)
    service = start_app(with_providers(NO_LIMITS, "openai-primary", "claude", "offline"), clock=clock)
    record_fixture(service.app, clock)
    client = client_for(service)
    settle(client, service)
    return service, client


def test_overview_numbers(fixture_service):
    service, client = fixture_service
    resp = client.get("/bmad/analytics")
    assert resp.status == 200, resp.body
    body = resp.json
    assert body["status"] == "success"
    a = body["analytics"]
    assert a["range"] == {"days": 30, "from": "2023-10-14", "to": "2023-11-12"}

    usage = a["usage"]
    assert usage["requests"] == 6
    assert usage["users"] == 3
    assert usage["sessions"] == 4  # alice twice (days apart), bob, carol
    assert usage["by_route"] == [
        {"route": "/bmad/tools", "requests": 5, "errors": 1, "avg_latency_ms": 23.0},
        {"route": "/bmad/workflows/{workflow_id}", "requests": 1, "errors": 1, "avg_latency_ms": 5.0},
    ]
    assert usage["avg_latency_ms"] == 20.0

    assert a["tools"] == {"executions": 2, "top": [
        {"tool": "analyst", "executions": 1, "errors": 0, "success_rate": 1.0, "avg_latency_ms": 100.0,
         "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 30, "cost_usd": 0.01},
        {"tool": "pm", "executions": 1, "errors": 1, "success_rate": 0.0, "avg_latency_ms": 300.0,
         "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost_usd": 0.0},
    ]}

    assert a["workflows"] == {"started": 2, "completed": 1, "failed": 1, "cancelled": 0, "success_rate": 0.5,
                              "by_workflow": [
        {"workflow": "greenfield-service", "started": 2, "completed": 1, "failed": 1, "cancelled": 0,
         "success_rate": 0.5,
         "avg_duration_ms": 2000.0}]}

    providers = a["providers"]
    assert providers["requests"] == 3 and providers["failures"] == 1 and providers["failovers"] == 1
    assert providers["prompt_tokens"] == 15 and providers["completion_tokens"] == 25
    assert providers["cost_usd"] == pytest.approx(0.012)
    assert providers["by_provider"] == [
        {"provider": "openai-primary", "requests": 2, "failures": 0, "success_rate": 1.0, "avg_latency_ms": 100.0,
         "prompt_tokens": 15, "completion_tokens": 25, "cost_usd": 0.012, "failovers": 0},
        {"provider": "claude", "requests": 1, "failures": 1, "success_rate": 0.0, "avg_latency_ms": 30000.0,
         "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "failovers": 1},
    ]

    bi = a["business_intelligence"]
    assert (bi["dau"], bi["mau"], bi["dau_mau_ratio"]) == (2, 3, 0.6667)
    dau = {d["date"]: d["users"] for d in bi["daily_active_users"]}
    assert len(dau) == 30
    assert dau == {**{d: 0 for d in dau}, "2023-11-09": 2, "2023-11-12": 2}
    trends = {d["date"]: d for d in bi["usage_trends"]}
    assert len(trends) == 30
    assert trends["2023-11-09"] == {"date": "2023-11-09", "requests": 4, "errors": 1, "prompt_tokens": 15,
                                    "completion_tokens": 25, "cost_usd": 0.012}
    assert trends["2023-11-12"] == {"date": "2023-11-12", "requests": 2, "errors": 1, "prompt_tokens": 0,
                                    "completion_tokens": 0, "cost_usd": 0.0}
    assert trends["2023-11-10"]["requests"] == 0
    assert bi["error_analysis"] == {
        "requests": 6, "errors": 2, "error_rate": 0.3333,
        "by_type": {"internal_error": 1, "not_found": 1},
        "by_route": {"/bmad/tools": 1, "/bmad/workflows/{workflow_id}": 1},
        "by_status": {"404": 1, "500": 1},
    }

    rt = a["real_time_metrics"]
    assert rt["requests_last_minute"] == 2
    assert rt["active_users_5m"] == 2
    assert rt["workflows_running"] == 0
    assert rt["error_rate_5m"] == 0.5
    assert rt["avg_response_time_ms_5m"] == 10.0
    assert rt["p95_response_time_ms_5m"] == 15.0
    assert rt["tokens_last_hour"] == {"prompt": 0, "completion": 0, "total": 0}


def test_days_narrows_the_range(fixture_service):
    service, client = fixture_service
    a = client.get("/bmad/analytics?days=1").json["analytics"]
    assert a["usage"]["requests"] == 2
    assert a["usage"]["users"] == 2
    assert a["usage"]["sessions"] == 2
    assert a["workflows"]["started"] == 1 and a["workflows"]["completed"] == 1
    assert a["providers"]["requests"] == 0
    assert [d["date"] for d in a["business_intelligence"]["usage_trends"]] == ["2023-11-12"]
    # MAU is always the last 30 days, whatever the range
    assert a["business_intelligence"]["mau"] == 3


def test_user_report(fixture_service):
    service, client = fixture_service
    resp = client.get("/bmad/analytics/user/alice")
    assert resp.status == 200, resp.body
    u = resp.json["user"]
    assert u["user_id"] == "alice"
    assert u["requests"] == 4 and u["errors"] == 1 and u["error_rate"] == 0.25
    assert u["sessions"] == {"count": 2, "avg_duration_seconds": 85.0}  # (170 s + 0 s) / 2
    assert u["tools"] == {"analyst": 1}
    assert u["workflows"] == {"greenfield-service": 1}
    assert u["first_seen"] == "2023-11-09T01:00:00.000Z"
    assert u["last_seen"] == "2023-11-12T12:01:10.000Z"
    daily = {d["date"]: (d["requests"], d["errors"]) for d in u["daily_activity"]}
    assert len(daily) == 30
    assert daily["2023-11-09"] == (3, 0) and daily["2023-11-12"] == (1, 1) and daily["2023-11-10"] == (0, 0)

    one_day = client.get("/bmad/analytics/user/alice?days=1").json["user"]
    assert one_day["requests"] == 1 and one_day["sessions"] == {"count": 1, "avg_duration_seconds": 0.0}
    assert one_day["tools"] == {}

    bob = client.get("/bmad/analytics/user/bob").json["user"]
    assert bob["requests"] == 1 and bob["errors"] == 1 and bob["tools"] == {"pm": 1}
    assert bob["sessions"] == {"count": 1, "avg_duration_seconds": 10.0}

    missing = client.get("/bmad/analytics/user/nobody")
    assert missing.status == 404 and missing.json["error"]["type"] == "user_not_found"


def test_workflow_report(fixture_service):
    service, client = fixture_service
    resp = client.get("/bmad/analytics/workflow/greenfield-service")
    assert resp.status == 200, resp.body
    w = resp.json["workflow"]
    assert (w["executions"], w["completed"], w["failed"], w["success_rate"]) == (2, 1, 1, 0.5)
    assert w["avg_duration_ms"] == 2000.0 and w["p95_duration_ms"] == 3000.0
    assert w["steps"] == [  # in the catalog's order (brief before prd), not the order they ran in
        {"step": "brief", "tool": "pm", "executions": 1, "failures": 1, "avg_duration_ms": 200.0,
         "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost_usd": 0.0},
        {"step": "prd", "tool": "analyst", "executions": 1, "failures": 0, "avg_duration_ms": 100.0,
         "prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30, "cost_usd": 0.01},
    ]
    trend = {d["date"]: d for d in w["daily_trend"]}
    assert trend["2023-11-09"] == {"date": "2023-11-09", "started": 1, "completed": 0, "failed": 1,
                                     "cancelled": 0}
    assert trend["2023-11-12"] == {"date": "2023-11-12", "started": 1, "completed": 1, "failed": 0,
                                     "cancelled": 0}

    empty = client.get("/bmad/analytics/workflow/story-cycle").json["workflow"]
    assert empty["executions"] == 0 and empty["success_rate"] == 0.0 and empty["steps"] == []

    missing = client.get("/bmad/analytics/workflow/no-such-workflow")
    assert missing.status == 404 and missing.json["error"]["type"] == "workflow_not_found"


def test_provider_report(fixture_service):
    service, client = fixture_service
    p = client.get("/bmad/analytics/provider/openai-primary").json["provider"]
    assert (p["requests"], p["failures"], p["success_rate"]) == (2, 0, 1.0)
    assert p["avg_latency_ms"] == 100.0 and p["p95_latency_ms"] == 150.0
    assert (p["prompt_tokens"], p["completion_tokens"], p["total_tokens"]) == (15, 25, 40)
    assert p["cost_usd"] == 0.012 and p["failovers"] == 0 and p["circuit_openings"] == 0
    day = {d["date"]: d for d in p["daily_trend"]}["2023-11-09"]
    assert day == {"date": "2023-11-09", "requests": 2, "failures": 0, "prompt_tokens": 15,
                   "completion_tokens": 25, "cost_usd": 0.012}

    c = client.get("/bmad/analytics/provider/claude").json["provider"]
    assert (c["requests"], c["failures"], c["success_rate"]) == (1, 1, 0.0)
    assert c["failovers"] == 1 and c["circuit_openings"] == 1

    idle = client.get("/bmad/analytics/provider/offline").json["provider"]
    assert idle["requests"] == 0 and idle["p95_latency_ms"] == 0.0

    missing = client.get("/bmad/analytics/provider/not-configured")
    assert missing.status == 404 and missing.json["error"]["type"] == "provider_not_found"


def test_real_time_endpoint_and_requests_recorded_over_http(fixture_service):
    service, client = fixture_service
    rt = client.get("/bmad/analytics/real-time").json["real_time_metrics"]
    assert rt["requests_last_minute"] == 2
    # that request itself is now recorded too (as 'anonymous', open mode without X-User-ID)
    settle(client, service)
    rt = client.get("/bmad/analytics/real-time").json["real_time_metrics"]
    assert rt["requests_last_minute"] == 3 and rt["active_users_5m"] == 3
