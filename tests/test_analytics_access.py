"""Who may read which report, and hostile path and query parameters (4xx, never 500)."""

import pytest

from tests.analytics_support import NO_LIMITS, db_rows, settle, with_providers

KEYS = {**NO_LIMITS, "auth": {"api_keys": [{"key": "admin-key-123", "user": "root", "role": "admin"},
                                           {"key": "alice-key-123", "user": "alice"},
                                           {"key": "bob-key-123", "user": "bob"}]}}
ADMIN = {"Authorization": "Bearer admin-key-123"}
ALICE = {"Authorization": "Bearer alice-key-123"}


@pytest.fixture
def secured(start_app, client_for):
    service = start_app(with_providers(KEYS, "offline"))
    alice = client_for(service, ALICE)
    assert alice.get("/bmad/tools").status == 200
    settle(alice, service)
    return service, alice, client_for(service, ADMIN)


AGGREGATE = ["/bmad/analytics", "/bmad/analytics/real-time", "/bmad/analytics/workflow/greenfield-service",
             "/bmad/analytics/provider/offline"]


def test_aggregate_reports_need_an_admin_key(secured, client_for):
    service, alice, admin = secured
    anonymous = client_for(service)
    for path in AGGREGATE:
        assert anonymous.get(path).status == 401, path
        resp = alice.get(path)
        assert resp.status == 403 and resp.json["error"]["type"] == "forbidden", path
        assert admin.get(path).status == 200, path


def test_a_user_reads_only_their_own_report(secured):
    service, alice, admin = secured
    own = alice.get("/bmad/analytics/user/alice")
    assert own.status == 200 and own.json["user"]["requests"] == 1
    assert alice.get("/bmad/analytics/user/bob").status == 403
    assert alice.get("/bmad/analytics/user/never-seen").status == 403  # no hint whether a user exists
    assert admin.get("/bmad/analytics/user/alice").status == 200
    assert admin.get("/bmad/analytics/user/never-seen").status == 404


def test_failed_authentication_is_recorded(secured, client_for):
    service, alice, admin = secured
    intruder = client_for(service, {"Authorization": "Bearer wrong-key"})
    assert intruder.get("/bmad/tools").status == 401
    assert intruder.get("/bmad/analytics").status == 401
    settle(intruder, service)
    rows = db_rows(service, "SELECT route, status, error_type, user_id FROM events WHERE type = 'auth_failed' "
                            "ORDER BY id")
    assert rows == [("/bmad/tools", 401, "invalid_api_key", None), ("/bmad/analytics", 401, "invalid_api_key", None)]
    api = db_rows(service, "SELECT COUNT(*) FROM events WHERE type = 'api_request' AND status = 401")
    assert api == [(2,)]


HOSTILE = ["a'b", "%27%20OR%20%271%27=%271", "x%22%3B%20DROP%20TABLE%20events%3B--", "%00", "a%00b",
           "%ff%fe", "..%2F..%2Fetc", "a" * 10_000, "%E2%80%AE", "%5C", "%0d%0aX-Injected:1", "*", "%25"]


@pytest.mark.parametrize("kind", ["user", "workflow", "provider"])
def test_hostile_path_parameters_get_4xx_never_500(secured, kind):
    service, alice, admin = secured
    for value in HOSTILE:
        resp = admin.get(f"/bmad/analytics/{kind}/{value}")
        assert resp.status in (400, 404, 414), (value[:40], resp.status, resp.body[:200])
        if resp.json:
            assert resp.json["status"] == "error"
    assert db_rows(service, "SELECT COUNT(*) > 0 FROM events") == [(1,)]  # the table is still there


@pytest.mark.parametrize("days", ["abc", "0", "-1", "1.5", "", "91", "99999999999999999999", "%00", "1e3",
                                  "%205", "+5", "%D9%A3", "5%00"])
def test_bad_days_is_400_naming_the_parameter(secured, days):
    service, alice, admin = secured
    for path in ("/bmad/analytics", "/bmad/analytics/user/alice", "/bmad/analytics/workflow/greenfield-service",
                 "/bmad/analytics/provider/offline"):
        resp = admin.get(f"{path}?days={days}")
        assert resp.status == 400, (path, days, resp.status)
        assert "days" in resp.json["error"]["message"]


def test_good_days_values(secured):
    service, alice, admin = secured
    for days in ("1", "30", "90", "007"):
        assert admin.get(f"/bmad/analytics?days={days}").status == 200
