"""Health checks that let a provider back in: backoff re-checks, a live trial, passive recovery, no models list."""

from bmad.gateway.health import ProviderHealth
from bmad.providers.base import CONNECTION, ProviderError
from tests.support import FakeClock, eventually
from tests.fakes.upstream import FakeUpstream
from tests.llm_support import entry, gateway_config

MESSAGES = [{"role": "user", "content": "are you up?"}]


def ask(client, model="gpt-4o-mini"):
    return client.post("/v1/chat/completions", {"model": model, "messages": MESSAGES})


def chats(up):
    return [r for r in up.requests if r.route == "chat"]


def checked_config(*providers, **sections):
    """Gateway config with the background health checks on (every 300 s, the default)."""
    return gateway_config(*providers, health_checks={"interval_seconds": 300.0}, **sections)


def first_check_done(service, name):
    """Wait for the background thread's first check of ``name`` (it runs at startup)."""
    return eventually(lambda: service.app.llm.health.snapshot(name)["last_check"], timeout=5)


def test_a_server_that_starts_after_the_gateway_is_taken_into_use_at_the_next_backoff_step(start_app, client_for):
    clock = FakeClock()
    with FakeUpstream("openai") as up:
        up.fault("down")  # docker-compose: the gateway is up before vLLM / Ollama
        service = start_app(checked_config(entry(up, "local")), clock=clock)
        first_check_done(service, "local")
        health = service.app.llm.health
        assert not health.healthy("local")
        assert health.next_check("local") == clock() + 5  # not the 300 s interval
        client = client_for(service)
        r = ask(client)  # the one live trial after the failed check: the server is still down
        assert r.status == 502 and r.getheader("X-BMAD-Attempts") == "1"
        r = ask(client)  # one trial per failed check: now refused without trying
        assert r.status == 503 and r.json["error"]["code"] == "all_providers_unavailable"
        assert "failed its last health check" in r.json["error"]["message"]
        assert r.getheader("Retry-After") == "5"
        up.revive()
        clock.tick(5)
        health.run_due()  # what the thread does when the 5 s are up
        assert health.healthy("local")
        assert [ask(client).status for _ in range(3)] == [200, 200, 200]
        assert health.next_check("local") == clock() + 300


def test_a_live_trial_that_succeeds_marks_the_provider_up_at_once(start_app, client_for):
    with FakeUpstream("openai") as up:
        up.fault("down")
        service = start_app(checked_config(entry(up, "local")), clock=FakeClock())
        first_check_done(service, "local")
        up.revive()
        client = client_for(service)
        r = ask(client)  # no re-check has run; the trial request goes through and works
        assert r.status == 200 and r.getheader("X-BMAD-Provider") == "local"
        [status] = client.get("/bmad/providers").json["providers"]
        assert status["healthy"] is True and status["last_error"] is None
        assert client.get("/bmad/health").json["checks"]["providers"]["available"] == 1
        assert [ask(client).status for _ in range(3)] == [200, 200, 200]
        assert [r.route for r in up.requests] == ["chat"] * 4  # no health check was needed for it
        logs = service.app.logger.records()
        assert any(r["msg"] == "provider healthy again" and r["evidence"] == "live request" for r in logs)


def test_no_trial_while_another_candidate_is_available(start_app, client_for):
    with FakeUpstream("openai") as a, FakeUpstream("openai") as b:
        a.fault("down")
        service = start_app(checked_config(entry(a, "a"), entry(b, "b")), clock=FakeClock())
        first_check_done(service, "a")
        first_check_done(service, "b")
        a.revive()
        client = client_for(service)
        assert {ask(client).getheader("X-BMAD-Provider") for _ in range(4)} == {"b"}
        assert chats(a) == []


def test_a_server_without_a_models_list_is_reachable(start_app, client_for):
    for status in (404, 405):
        with FakeUpstream("openai") as up:
            up.fault("status", health=True, status=status)  # answers /chat/completions, not GET /models
            service = start_app(checked_config(entry(up, "llamacpp")), clock=FakeClock())
            first_check_done(service, "llamacpp")
            assert service.app.llm.health.healthy("llamacpp")
            client = client_for(service)
            assert ask(client).status == 200
            assert client.get("/bmad/providers").json["providers"][0]["healthy"] is True


class _Flaky:
    """A provider stub whose health check fails until ``up`` is set."""

    type = "openai"

    def __init__(self, name):
        self.name = name
        self.up = False
        self.checks = 0
        self.spec = type("Spec", (), {"secrets": ()})()

    def check_health(self):
        self.checks += 1
        if not self.up:
            raise ProviderError(CONNECTION, "connection refused by 127.0.0.1:9")
        return ["m"]


def _delays(health, clock, provider, rounds):
    delays = []
    for _ in range(rounds):
        health.run_due()
        due = health.next_check(provider.name)
        delays.append(due - clock())
        clock.tick(due - clock())
    return delays


def test_re_checks_back_off_5_10_30_60_120_then_the_interval():
    clock = FakeClock()
    provider = _Flaky("p")
    health = ProviderHealth([provider], interval=300.0, clock=clock)
    assert _delays(health, clock, provider, 7) == [5, 10, 30, 60, 120, 300, 300]
    provider.up = True
    health.run_due()
    assert health.healthy("p") and health.next_check("p") - clock() == 300
    assert health.snapshot("p")["failures"] == 0


def test_backoff_never_exceeds_the_interval_and_checks_only_when_due():
    clock = FakeClock()
    provider = _Flaky("p")
    health = ProviderHealth([provider], interval=20.0, clock=clock)
    assert _delays(health, clock, provider, 4) == [5, 10, 20, 20]
    health.run_due()
    checks = provider.checks
    clock.tick(19)
    assert health.run_due() == 1  # seconds until it is due
    assert provider.checks == checks


def test_one_trial_per_failed_check():
    clock = FakeClock()
    provider = _Flaky("p")
    health = ProviderHealth([provider], interval=300.0, clock=clock)
    assert not health.try_trial("p")  # healthy (never checked): no trial needed
    health.run_due()
    assert health.try_trial("p") and not health.try_trial("p")
    health.release_trial("p")  # the trial never reached the provider: another may go
    assert health.try_trial("p") and not health.try_trial("p")
    clock.tick(5)
    health.run_due()
    assert health.try_trial("p")
    health.mark_up("p")
    assert health.healthy("p") and not health.try_trial("p")
