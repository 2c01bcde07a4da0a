"""Who may see which figures: the metrics scrape, /bmad/providers and /bmad/performance."""

from tests.analytics_support import settle

ADMIN, ALICE, BOB = "sk-admin-0123456789", "sk-alice-0123456789", "sk-bob-0123456789"
KEYS = {"auth": {"api_keys": [{"key": ADMIN, "user": "root", "role": "admin"},
                              {"key": ALICE, "user": "alice"}, {"key": BOB, "user": "bob"}]},
        "rate_limits": {"enabled": False}, "cache": {"enabled": False}}
SHARED_FIGURES = {"requests", "failures", "success_rate", "avg_latency_ms", "p95_latency_ms", "prompt_tokens",
                  "completion_tokens", "cost_usd"}


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def test_an_admin_key_is_accepted_on_metrics_beside_the_token(start_app, client_for):
    service = start_app(dict(KEYS, metrics={"token": "scrape-token-123"}))
    client = client_for(service)
    assert client.get("/bmad/metrics", headers=bearer("scrape-token-123")).status == 200
    resp = client.get("/bmad/metrics", headers=bearer(ADMIN))
    assert resp.status == 200 and b"bmad_http_requests" in resp.body
    for refused in (None, bearer(ALICE), bearer("sk-not-a-key-at-all")):
        resp = client.get("/bmad/metrics", headers=refused)
        assert resp.status == 401 and resp.json["error"]["type"] == "invalid_metrics_token"
        assert "admin API key" in resp.json["error"]["message"]


def test_open_mode_does_not_turn_every_caller_into_a_metrics_admin(start_app, client_for):
    service = start_app({"metrics": {"token": "scrape-token-123"}})
    client = client_for(service)
    assert client.get("/bmad/metrics").status == 401
    assert client.get("/bmad/metrics", headers={"X-User-ID": "mallory"}).status == 401


def _chat(client, n):
    for _ in range(n):
        resp = client.post("/v1/chat/completions", {"model": "bmad-default",
                                                    "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status == 200, resp.json


def test_users_see_health_and_their_own_figures_admins_see_all(start_app, client_for):
    service = start_app(KEYS)
    alice = client_for(service, bearer(ALICE))
    bob = client_for(service, bearer(BOB))
    admin = client_for(service, bearer(ADMIN))
    _chat(alice, 1)
    _chat(bob, 2)
    settle(alice, service)
    settle(bob, service)

    everything = admin.get("/bmad/providers").json
    assert everything["scope"] == "all" and everything["providers"][0]["requests"] == 3
    mine = alice.get("/bmad/providers").json
    assert mine["scope"] == "own" and mine["user"] == "alice"
    (offline,) = mine["providers"]
    assert offline["name"] == "offline" and offline["healthy"] is True and offline["circuit_state"] == "closed"
    assert not SHARED_FIGURES & set(offline), offline
    assert offline["your_usage"]["requests"] == 1 and offline["your_usage"]["failures"] == 0
    assert bob.get("/bmad/providers").json["providers"][0]["your_usage"]["requests"] == 2

    stats = admin.get("/bmad/performance").json["stats"]
    assert stats["total_requests"] >= 3 and "/v1/chat/completions" in stats["by_route"]
    own = alice.get("/bmad/performance").json
    assert own["scope"] == "own"
    assert set(own["stats"]) == {"window_seconds", "circuit_breakers", "your_requests"}
    assert own["stats"]["circuit_breakers"] == {"offline": "closed"}
    assert own["stats"]["your_requests"]["requests"] >= 1
    assert own["stats"]["your_requests"]["requests"] < stats["total_requests"]
    text = alice.get("/bmad/performance").body.decode()
    assert "by_route" not in text and "cost_usd" not in text and "connection_pool" not in text
