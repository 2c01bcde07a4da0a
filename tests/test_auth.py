"""Authentication modes over real sockets."""

from tests.support import eventually

KEYS = {"auth": {"api_keys": [{"key": "alice-key-123", "user": "alice", "role": "admin"},
                              {"key_env": "BOB_KEY", "user": "bob"}]}}


def test_open_mode_uses_x_user_id_or_anonymous(start_app, client_for):
    service = start_app()
    assert service.app.auth.open_mode
    assert any("open development mode" in r["msg"] for r in service.app.logger.records())
    c = client_for(service)
    assert c.get("/bmad/tools").status == 200
    c.get("/bmad/tools", headers={"X-User-ID": "dana"})
    users = eventually(lambda: [r["user"] for r in service.app.logger.records() if r["msg"] == "request"][-2:] if
                       len([r for r in service.app.logger.records() if r["msg"] == "request"]) >= 2 else None)
    assert users == ["anonymous", "dana"]


def test_open_mode_rejects_a_malformed_user_id(start_app, client_for):
    r = client_for(start_app()).get("/bmad/tools", headers={"X-User-ID": "bad id with spaces"})
    assert r.status == 401 and "X-User-ID" in r.json["error"]["message"]


def test_keys_required_when_configured(start_app, client_for):
    service = start_app(KEYS, environ={"BOB_KEY": "bob-key-456"})
    c = client_for(service)
    r = c.get("/bmad/tools")
    assert r.status == 401 and r.json["error"]["type"] == "missing_api_key"
    assert r.getheader("WWW-Authenticate", "").startswith("Bearer")
    r = c.get("/bmad/tools", headers={"Authorization": "Bearer wrong"})
    assert r.status == 401 and r.json["error"]["type"] == "invalid_api_key"
    r = c.get("/bmad/tools", headers={"Authorization": "Basic abc"})
    assert r.status == 401
    assert c.get("/bmad/tools", headers={"Authorization": "Bearer alice-key-123"}).status == 200
    assert c.get("/bmad/tools", headers={"Authorization": "Bearer bob-key-456"}).status == 200


def test_x_user_id_is_ignored_when_keys_are_configured(start_app, client_for):
    service = start_app(KEYS, environ={"BOB_KEY": "bob-key-456"})
    r = client_for(service).get("/bmad/tools", headers={"X-User-ID": "alice"})
    assert r.status == 401


def test_health_and_metrics_are_open_with_keys_configured(start_app, client_for):
    c = client_for(start_app(KEYS, environ={"BOB_KEY": "b"}))
    assert c.get("/bmad/health").status == 200
    assert c.get("/bmad/metrics").status == 200


def test_key_maps_to_user_and_role(start_app, client_for):
    service = start_app(KEYS, environ={"BOB_KEY": "bob-key-456"})
    service.app.router.get("/bmad/test-admin", lambda req: {"user": req.user}, auth="admin")
    c = client_for(service)
    r = c.get("/bmad/test-admin", headers={"Authorization": "Bearer alice-key-123"})
    assert r.status == 200 and r.json["user"] == "alice"
    r = c.get("/bmad/test-admin", headers={"Authorization": "Bearer bob-key-456"})
    assert r.status == 403


def test_keys_never_appear_in_logs_or_responses(start_app, client_for):
    service = start_app(KEYS, environ={"BOB_KEY": "bob-key-456"})
    c = client_for(service)
    bodies = []
    for key in ("alice-key-123", "bob-key-456", "not-a-key-789"):
        r = c.get("/bmad/tools", headers={"Authorization": f"Bearer {key}"})
        bodies.append(r.body.decode() + str(r.getheaders()))
    eventually(lambda: len([r for r in service.app.logger.records() if r["msg"] == "request"]) >= 3)
    text = service.app.logger.text() + "".join(bodies) + client_for(service).get("/bmad/metrics").body.decode()
    for key in ("alice-key-123", "bob-key-456", "not-a-key-789"):
        assert key not in text


def test_api_keys_from_environment_variable(start_app, client_for):
    service = start_app(environ={"BMAD_API_KEYS": "k1:erin:admin,k2:frank"})
    c = client_for(service)
    assert c.get("/bmad/tools").status == 401
    assert c.get("/bmad/tools", headers={"Authorization": "Bearer k2"}).status == 200
