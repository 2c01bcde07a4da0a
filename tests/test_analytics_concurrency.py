"""Requests from many connections at once are each recorded exactly once."""

import threading

from tests.analytics_support import NO_LIMITS, db_rows, settle

THREADS = 8
PER_THREAD = 40


def test_concurrent_requests_are_recorded_exactly_once(start_app, client_for):
    service = start_app({**NO_LIMITS, "analytics": {"batch_size": 7, "flush_interval_seconds": 0.05}})
    clients = [client_for(service, {"X-User-ID": f"u{i}"}) for i in range(THREADS)]
    failures = []

    def work(client):
        try:
            for _ in range(PER_THREAD):
                assert client.get("/bmad/tools").status == 200
                service.app.events.record("cache_hit", route="/bmad/tools")
            settle(client, service)
        except BaseException as e:  # surfaced below; a thread's assertion would otherwise vanish
            failures.append(e)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    assert service.app.analytics.flush()
    total = THREADS * PER_THREAD
    assert db_rows(service, "SELECT COUNT(*) FROM events WHERE type = 'api_request'") == [(total,)]
    assert db_rows(service, "SELECT COUNT(*) FROM events WHERE type = 'cache_hit'") == [(total,)]
    assert db_rows(service, "SELECT SUM(events) FROM daily_rollup WHERE dim = 'all' AND type = 'api_request'") == [
        (total,)]
    assert db_rows(service, "SELECT COUNT(DISTINCT user_id), COUNT(DISTINCT session_id) FROM events "
                            "WHERE type = 'api_request'") == [(THREADS, THREADS)]
    assert service.app.analytics.stats()["dropped"]["queue_full"] == 0
