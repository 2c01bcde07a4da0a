"""The events other parts record (router, tools, workflows) arrive with the fields the reports read."""

import pytest

from tests.analytics_support import NO_LIMITS, db_rows, settle


def test_tool_runs_through_the_router_show_in_the_reports(start_app, client_for):
    service = start_app(NO_LIMITS)
    if getattr(service.app, "llm", None) is None:
        pytest.skip("the provider router is not part of this build")
    client = client_for(service, {"X-User-ID": "erin"})
    for _ in range(3):
        resp = client.post("/bmad/tools/analyst/run", {"input": "a product idea"})
        if resp.status == 404 and resp.json["error"]["type"] == "not_found":
            pytest.skip("no tool-run route in this build")
        assert resp.status == 200, resp.body
    settle(client, service)
    rows = db_rows(service, "SELECT type, tool, provider, user_id, error FROM events "
                            "WHERE type IN ('tool_execution', 'provider_request') ORDER BY id")
    assert [r[0] for r in rows].count("tool_execution") == 3
    assert all(r[4] == 0 for r in rows)
    assert {r[2] for r in rows if r[0] == "provider_request"} == {"offline"}

    a = client.get("/bmad/analytics").json["analytics"]
    assert a["tools"]["top"][0]["tool"] == "analyst" and a["tools"]["top"][0]["executions"] == 3
    assert a["providers"]["by_provider"][0]["provider"] == "offline"
    assert a["providers"]["requests"] == 3 and a["providers"]["failures"] == 0
    p = client.get("/bmad/analytics/provider/offline").json["provider"]
    assert p["requests"] == 3 and p["success_rate"] == 1.0
    u = client.get("/bmad/analytics/user/erin").json["user"]
    assert u["tools"] == {"analyst": 3} and u["requests"] >= 3
    assert client.get("/bmad/analytics/provider/openai-primary").status == 404  # not configured here
