"""Helpers shared by the analytics tests."""

import sqlite3

DAY = 86400
# Rate limits and the response cache off: these tests count every request and every upstream call.
NO_LIMITS = {"rate_limits": {"enabled": False}, "cache": {"enabled": False}}


def settle(client, service):
    """Wait until every request sent on ``client`` has been recorded, then until it is committed.

    A request's observer runs before the server reads the next request on the same
    keep-alive connection, so one unrecorded request (health) is a barrier.
    """
    assert client.get("/bmad/health").status == 200
    assert service.app.analytics.flush(), "the analytics writer did not flush"


def at(clock, ts):
    """Set the fake clock to ``ts``."""
    clock.now = float(ts)


def db_rows(service, sql, params=()):
    """Run a read query against the app's analytics database file."""
    conn = sqlite3.connect(service.app.analytics.store.path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def with_providers(config, *names):
    """``config`` with offline providers called ``names`` (analytics reports know configured providers only)."""
    return {**config, "providers": [{"name": name, "type": "offline"} for name in names]}
