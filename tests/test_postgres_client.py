"""The stdlib PostgreSQL client against a real server: authentication, every stored type, COPY, NOTIFY, cancel."""

import datetime
import decimal
import socket
import threading

import pytest

from bmad.storage.postgres import Postgres, PostgresConnectionError, PostgresError
from bmad.storage.scram import ScramClient
from tests.support import eventually
from tests.servers import PASSWORD, postgres_cluster


@pytest.fixture(scope="module")
def scram_port():
    with postgres_cluster("scram-sha-256") as (port, _):
        yield port


@pytest.fixture
def db(scram_port):
    pool = Postgres.from_url(f"postgresql://bmad:{PASSWORD}@127.0.0.1:{scram_port}/postgres?sslmode=disable")
    yield pool
    pool.close()


def test_scram_login_and_a_round_trip_of_every_stored_type(db):
    db.execute("DROP TABLE IF EXISTS kinds")
    db.execute("""CREATE TABLE kinds (t text, b bigint, d double precision, ok boolean, at timestamptz,
                  doc jsonb, raw bytea, n numeric, missing text)""")
    at = datetime.datetime(2026, 12, 2, 18, 30, 15, 123456, tzinfo=datetime.timezone.utc)
    row = ("it's \"quoted\" -- ; DROP TABLE kinds; é漢\u2028", -(2 ** 62), 3.25, True, at,
           {"k": [1, "two", None], "ü": {"x": 1.5}}, b"\x00\xff\r\n\\x", decimal.Decimal("12.3400"), None)
    db.execute("INSERT INTO kinds VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", row)
    result = db.execute("SELECT * FROM kinds")
    assert result.columns == ["t", "b", "d", "ok", "at", "doc", "raw", "n", "missing"]
    assert result.rows == [row]
    assert db.execute("SELECT count(*) FROM kinds WHERE t = $1", (row[0],)).rows == [(1,)]


def test_a_nul_in_text_is_refused_before_it_is_sent(db):
    with pytest.raises(ValueError):
        db.execute("SELECT $1::text", ("a\x00b",))
    assert db.execute("SELECT $1::bytea", (b"a\x00b",)).rows == [(b"a\x00b",)]


def test_server_errors_carry_their_sqlstate_and_the_connection_stays_usable(db):
    db.execute("DROP TABLE IF EXISTS uniq")
    db.execute("CREATE TABLE uniq (k text PRIMARY KEY)")
    db.execute("INSERT INTO uniq VALUES ($1)", ("a",))
    with pytest.raises(PostgresError) as caught:
        db.execute("INSERT INTO uniq VALUES ($1)", ("a",))
    assert caught.value.code == "23505"
    assert db.execute("SELECT 1").rows == [(1,)]


def test_a_transaction_commits_or_rolls_back(db):
    db.execute("DROP TABLE IF EXISTS tx")
    db.execute("CREATE TABLE tx (v int)")
    with db.transaction() as conn:
        conn.execute("INSERT INTO tx VALUES ($1)", (1,))
    with pytest.raises(RuntimeError):
        with db.transaction() as conn:
            conn.execute("INSERT INTO tx VALUES ($1)", (2,))
            raise RuntimeError("changed my mind")
    assert db.execute("SELECT v FROM tx").rows == [(1,)]


def test_copy_from_stdin_loads_rows_with_tabs_newlines_backslashes_and_nulls(db):
    db.execute("DROP TABLE IF EXISTS bulk")
    db.execute("CREATE TABLE bulk (id bigint, note text, doc jsonb)")
    rows = [(i, f"row {i}\twith\ttabs\nand a newline \\ and a backslash" if i % 3 else None, {"i": i})
            for i in range(5000)]
    assert db.copy_in("bulk", ["id", "note", "doc"], rows) == 5000
    assert db.execute("SELECT id, note, doc FROM bulk ORDER BY id").rows == rows
    with pytest.raises(ValueError):
        db.copy_in("bulk; drop table bulk", ["id"], [])


def test_a_statement_over_its_timeout_is_cancelled_on_the_server(db):
    with pytest.raises(PostgresError) as caught:
        db.execute("SELECT pg_sleep(30)", timeout=0.3)
    assert caught.value.code == "57014"
    assert db.execute("SELECT 2").rows == [(2,)]


def test_listen_receives_notify(db):
    listener = db.connect()
    try:
        listener.listen("runs")
        db.execute("SELECT pg_notify($1, $2)", ("runs", "run_1 cancel"))
        got = []
        for _ in range(50):
            got += listener.wait_notifications(0.1)
            if got:
                break
        assert got == [("runs", "run_1 cancel")]
    finally:
        listener.close()


def test_a_wrong_password_is_refused_without_echoing_it(scram_port):
    with pytest.raises(PostgresConnectionError) as caught:
        Postgres.from_url(f"postgresql://bmad:not-the-pw@127.0.0.1:{scram_port}/postgres?sslmode=disable").execute(
            "SELECT 1")
    assert "28P01" in str(caught.value) and "not-the-pw" not in str(caught.value)
    assert PASSWORD not in repr(Postgres.from_url(f"postgresql://bmad:{PASSWORD}@127.0.0.1:1/x"))


def test_tls_required_but_not_offered_is_refused(scram_port):
    with pytest.raises(PostgresConnectionError) as caught:
        Postgres.from_url(f"postgresql://bmad:{PASSWORD}@127.0.0.1:{scram_port}/postgres?sslmode=require").execute(
            "SELECT 1")
    assert "does not offer TLS" in str(caught.value)


def test_md5_authentication():
    with postgres_cluster("md5") as (port, password):
        pool = Postgres.from_url(f"postgresql://bmad:{password}@127.0.0.1:{port}/postgres?sslmode=disable")
        assert pool.execute("SELECT current_user").rows == [("bmad",)]
        pool.close()


def test_a_pooled_connection_the_server_ended_is_replaced(db):
    with db.connection() as conn:
        pid = conn.pid
    other = db.connect()
    other.execute("SELECT pg_terminate_backend($1::int)", (pid,))
    other.close()
    eventually(lambda: db._idle and db._idle[-1].stale(), timeout=10)  # the server's goodbye has arrived
    assert db.execute("SELECT 3").rows == [(3,)]
    assert db._idle[-1].pid != pid


def test_a_server_signature_that_does_not_match_is_refused():
    client = ScramClient("pw", nonce="abc")
    client.final(b"r=abcdef,s=c2FsdA==,i=4096")
    with pytest.raises(Exception) as caught:
        client.verify(b"v=AAAA")
    assert "signature" in str(caught.value)


def test_nothing_listening_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PostgresConnectionError):
        Postgres("127.0.0.1", port, "u", "p", "d", sslmode="disable", connect_timeout=0.5).execute("SELECT 1")
