"""A PostgreSQL client on the standard library: one connection as a small state machine, and a pool.

``Postgres.from_url("postgresql://user:pass@host:port/db?sslmode=disable|require|verify-full")``
gives a pool; ``execute(sql, params)`` runs one statement with bound
parameters (``$1``, ``$2``... -- never SQL assembled from input) and
returns a ``Result`` (``columns``, ``rows`` as tuples, ``command`` tag);
``transaction()`` lends one connection inside ``BEGIN``/``COMMIT``;
``copy_in(table, columns, rows)`` bulk-loads with ``COPY ... FROM STDIN``;
``listen(channel)`` gives a connection that receives ``NOTIFY``s.

Authentication: SCRAM-SHA-256, md5 or cleartext (only over TLS, or to a
server on this machine). A server error raises ``PostgresError`` with its
SQLSTATE ``code``; a broken connection raises ``PostgresConnectionError``
and is never reused. ``timeout`` on a statement cancels it on the server
(a CancelRequest) when it runs longer. The password never appears in an
error, a repr or a log line.
"""

import re
import select
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from urllib.parse import parse_qs, unquote, urlsplit

from . import pgwire
from .scram import MECHANISM, AuthenticationError, ScramClient, md5_password

SSLMODES = ("disable", "prefer", "require", "verify-full")
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")
COPY_CHUNK_BYTES = 256 * 1024
LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")


class PostgresError(Exception):
    """An error the server reported: ``code`` is its SQLSTATE (``23505`` unique violation, ``57014`` cancelled)."""

    def __init__(self, fields):
        self.fields = fields
        self.code = fields.get("C", "XX000")
        self.severity = fields.get("S", "ERROR")
        super().__init__(f"{self.severity} {self.code}: {fields.get('M', 'unknown error')}")


class PostgresConnectionError(Exception):
    """The server could not be reached or authenticated with, or the connection broke."""


class Result:
    """What one statement returned: ``columns`` (names), ``rows`` (tuples), ``command`` (its tag)."""

    __slots__ = ("columns", "rows", "command")

    def __init__(self, columns, rows, command):
        self.columns = columns
        self.rows = rows
        self.command = command

    @property
    def rowcount(self):
        """The row count in the command tag (``INSERT 0 3`` -> 3), or -1."""
        last = self.command.rsplit(" ", 1)[-1] if self.command else ""
        return int(last) if last.isdigit() else -1


def _identifier(name):
    if not IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain lower-case SQL identifier")
    return '"' + name + '"'


class Connection:
    """One authenticated connection; not shared between threads (the pool lends it to one at a time)."""

    def __init__(self, host, port, user, password, database, *, sslmode="prefer", connect_timeout=5.0,
                 timeout=30.0, application_name="bmad-api"):
        self.host, self.port = host, port
        self.pid = self.secret = None
        self.status = b"I"
        self.parameters = {}
        self.notifications = []
        self.broken = False
        self._buf = bytearray()
        self.sock = self._connect(sslmode, connect_timeout)
        self.sock.settimeout(timeout)
        try:
            self._start(user, password, database, application_name, tls=isinstance(self.sock, ssl.SSLSocket))
        except BaseException:
            self.close()
            raise

    # -- socket ---------------------------------------------------------------------------------

    def _connect(self, sslmode, connect_timeout):
        if sslmode not in SSLMODES:
            raise ValueError(f"sslmode must be one of {', '.join(SSLMODES)}")
        where = f"{self.host}:{self.port}"
        try:
            sock = socket.create_connection((self.host, self.port), timeout=connect_timeout)
        except OSError as e:
            raise PostgresConnectionError(f"cannot connect to PostgreSQL at {where}: {type(e).__name__}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sslmode == "disable":
            return sock
        try:
            sock.sendall(pgwire.ssl_request())
            answer = sock.recv(1)
        except OSError as e:
            sock.close()
            raise PostgresConnectionError(f"PostgreSQL at {where} broke the TLS request: {type(e).__name__}") from None
        if answer != b"S":
            if sslmode in ("require", "verify-full"):
                sock.close()
                raise PostgresConnectionError(f"PostgreSQL at {where} does not offer TLS, and sslmode is {sslmode}")
            return sock
        context = ssl.create_default_context()
        if sslmode != "verify-full":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            return context.wrap_socket(sock, server_hostname=self.host)
        except (OSError, ssl.SSLError) as e:
            sock.close()
            raise PostgresConnectionError(f"TLS to PostgreSQL at {where} failed: {type(e).__name__}") from None

    def _recv_exact(self, n):
        while len(self._buf) < n:
            try:
                chunk = self.sock.recv(max(65536, n - len(self._buf)))
            except OSError as e:
                self.broken = True
                raise PostgresConnectionError(f"reading from PostgreSQL failed: {type(e).__name__}") from None
            if not chunk:
                self.broken = True
                raise PostgresConnectionError("PostgreSQL closed the connection")
            self._buf += chunk
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _send(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            self.broken = True
            raise PostgresConnectionError(f"writing to PostgreSQL failed: {type(e).__name__}") from None

    def _read(self):
        """The next message that is not asynchronous (notices are dropped, notifications kept)."""
        while True:
            try:
                kind, body = pgwire.read_message(self._recv_exact)
            except pgwire.ProtocolError as e:
                self.broken = True
                raise PostgresConnectionError(str(e)) from None
            if kind == b"A":
                self._notification(body)
            elif kind == b"N":
                continue
            elif kind == b"S":
                name, value, _ = body.split(b"\x00", 2)
                self.parameters[name.decode()] = value.decode()
            else:
                return kind, body

    def _notification(self, body):
        channel, payload, _ = body[4:].split(b"\x00", 2)
        self.notifications.append((channel.decode("utf-8"), payload.decode("utf-8")))

    # -- startup and authentication ---------------------------------------------------------------

    def _start(self, user, password, database, application_name, tls):
        self._send(pgwire.startup(user, database, {"application_name": application_name,
                                                   "client_encoding": "UTF8"}))
        scram = None
        while True:
            kind, body = self._read()
            if kind == b"E":
                raise PostgresConnectionError(f"PostgreSQL refused the connection: {PostgresError(pgwire.fields(body))}")
            if kind == b"R":
                scram = self._authenticate(body, user, password, tls, scram)
            elif kind == b"K":
                self.pid, self.secret = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
            elif kind == b"Z":
                self.status = body[:1]
                return

    def _authenticate(self, body, user, password, tls, scram):
        code = int.from_bytes(body[:4], "big")
        if code == 0:
            return scram
        if password is None:
            raise PostgresConnectionError("PostgreSQL asks for a password and none is configured")
        if code == 3:
            if not tls and self.host not in LOCAL_HOSTS:
                raise PostgresConnectionError("PostgreSQL asks for a cleartext password over a connection "
                                              "without TLS: refused (use sslmode=require)")
            self._send(pgwire.message(b"p", pgwire.cstring(password)))
        elif code == 5:
            self._send(pgwire.message(b"p", md5_password(user, password, body[4:8]) + b"\x00"))
        elif code == 10:
            mechanisms = body[4:].split(b"\x00")
            if MECHANISM.encode() not in mechanisms:
                raise PostgresConnectionError("PostgreSQL offers no SASL mechanism this client knows")
            scram = ScramClient(password)
            first = scram.first()
            self._send(pgwire.message(b"p", pgwire.cstring(MECHANISM) + len(first).to_bytes(4, "big") + first))
        elif code == 11 and scram is not None:
            self._send(pgwire.message(b"p", scram.final(body[4:])))
        elif code == 12 and scram is not None:
            try:
                scram.verify(body[4:])
            except AuthenticationError as e:
                raise PostgresConnectionError(str(e)) from None
        else:
            raise PostgresConnectionError(f"PostgreSQL asks for an authentication method ({code}) this client "
                                          "does not support")
        return scram

    # -- statements -----------------------------------------------------------------------------

    def execute(self, sql, params=(), timeout=None):
        """Run one statement with bound parameters (extended protocol); a ``Result``."""
        encoded = [pgwire.encode_param(p) for p in params]
        self._send(pgwire.parse(sql, [oid for oid, _ in encoded]) + pgwire.bind([v for _, v in encoded])
                   + pgwire.describe_portal() + pgwire.execute() + pgwire.SYNC)
        return self._collect(timeout)

    def simple(self, sql, timeout=None):
        """Run statements the service wrote itself (no parameters), e.g. ``BEGIN`` or migrations."""
        self._send(pgwire.query(sql))
        return self._collect(timeout)

    def _collect(self, timeout):
        timer = self._cancel_after(timeout) if timeout else None
        columns, rows, command, error = [], [], "", None
        try:
            while True:
                kind, body = self._read()
                if kind == b"T":
                    columns = pgwire.row_description(body)
                elif kind == b"D":
                    values = pgwire.data_row(body)
                    rows.append(tuple(pgwire.decode(oid, raw) for (_, oid), raw in zip(columns, values)))
                elif kind == b"C":
                    command = body.rstrip(b"\x00").decode("ascii", "replace")
                elif kind == b"E":
                    error = PostgresError(pgwire.fields(body))
                elif kind == b"Z":
                    self.status = body[:1]
                    break
                elif kind == b"G":  # COPY FROM STDIN asked through a plain statement: refuse it cleanly
                    self._send(pgwire.message(b"f", b"use copy_in\x00"))
        finally:
            if timer is not None:
                timer.cancel()
        if error is not None:
            raise error
        return Result([name for name, _ in columns], rows, command)

    def _cancel_after(self, seconds):
        pid, secret, host, port = self.pid, self.secret, self.host, self.port

        def cancel():
            try:
                with socket.create_connection((host, port), timeout=5) as sock:
                    sock.sendall(pgwire.cancel_request(pid, secret))
                    sock.recv(1)
            except OSError:
                pass
        timer = threading.Timer(seconds, cancel)
        timer.daemon = True
        timer.start()
        return timer

    def copy_in(self, table, columns, rows):
        """``COPY table (columns) FROM STDIN`` of ``rows``; returns the number of rows the server took."""
        sql = f"COPY {_identifier(table)} ({', '.join(_identifier(c) for c in columns)}) FROM STDIN"
        self._send(pgwire.query(sql))
        kind, body = self._read()
        if kind == b"E":
            error = PostgresError(pgwire.fields(body))
            self._collect(None)
            raise error
        if kind != b"G":
            self.broken = True
            raise PostgresConnectionError(f"PostgreSQL answered COPY with message {kind!r}")
        chunk = bytearray()
        for row in rows:
            chunk += b"\t".join(pgwire.copy_text(v) for v in row) + b"\n"
            if len(chunk) >= COPY_CHUNK_BYTES:
                self._send(pgwire.copy_data(bytes(chunk)))
                chunk.clear()
        if chunk:
            self._send(pgwire.copy_data(bytes(chunk)))
        self._send(pgwire.COPY_DONE)
        return self._collect(None).rowcount

    def listen(self, channel):
        """Receive ``NOTIFY``s on ``channel`` (a plain identifier)."""
        self.simple(f"LISTEN {_identifier(channel)}")

    def wait_notifications(self, timeout):
        """The ``(channel, payload)`` notifications that arrive within ``timeout`` seconds (maybe none)."""
        if not self.notifications and not self._buf:
            try:
                readable, _, _ = select.select([self.sock], [], [], timeout)
            except (OSError, ValueError):
                self.broken = True
                raise PostgresConnectionError("the listening connection is closed") from None
            if readable:
                kind, body = pgwire.read_message(self._recv_exact)
                if kind == b"A":
                    self._notification(body)
        while self._buf and len(self._buf) >= 5:
            kind, body = pgwire.read_message(self._recv_exact)
            if kind == b"A":
                self._notification(body)
        out, self.notifications = self.notifications, []
        return out

    def stale(self):
        """True when an idle connection is unusable: readable (closed by the server) or inside a transaction."""
        if self.broken or self.status != b"I":
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self):
        """Say goodbye and close the socket."""
        try:
            if not self.broken:
                self.sock.sendall(pgwire.TERMINATE)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class Postgres:
    """A pool of connections to one database; safe to share between threads."""

    def __init__(self, host, port, user, password, database, *, sslmode="prefer", max_idle=8, connect_timeout=5.0,
                 timeout=30.0):
        self.host, self.port, self.user, self.database = host, port, user, database
        self._password = password
        self._options = dict(sslmode=sslmode, connect_timeout=connect_timeout, timeout=timeout)
        self.max_idle = max_idle
        self._idle = []
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url, **options):
        """A pool for ``postgresql://user:pass@host:port/db?sslmode=...``."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("a PostgreSQL URL starts with postgresql://")
        query = parse_qs(parts.query)
        sslmode = query.get("sslmode", ["prefer"])[0]
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432, unquote(parts.username or "postgres"),
                   unquote(parts.password) if parts.password is not None else None,
                   unquote(parts.path.lstrip("/")) or unquote(parts.username or "postgres"), sslmode=sslmode,
                   **options)

    def __repr__(self):
        return f"Postgres({self.user}@{self.host}:{self.port}/{self.database})"

    def connect(self):
        """A new connection of this pool's settings (not pooled: for ``LISTEN``, say)."""
        return Connection(self.host, self.port, self.user, self._password, self.database, **self._options)

    def _acquire(self):
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self.connect()
            if not conn.stale():  # a syscall: outside the lock
                return conn
            conn.close()

    def _release(self, conn):
        if conn.broken or conn.status != b"I":
            conn.close()
            return
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    @contextmanager
    def connection(self):
        """Lend one connection."""
        conn = self._acquire()
        try:
            yield conn
        except PostgresConnectionError:
            conn.broken = True
            raise
        finally:
            self._release(conn)

    def execute(self, sql, params=(), timeout=None):
        """Run one statement on a pooled connection; a ``Result``."""
        with self.connection() as conn:
            return conn.execute(sql, params, timeout)

    @contextmanager
    def transaction(self):
        """A connection inside ``BEGIN``; committed when the block ends, rolled back when it raises."""
        with self.connection() as conn:
            conn.simple("BEGIN")
            try:
                yield conn
            except BaseException:
                if not conn.broken:
                    conn.simple("ROLLBACK")
                raise
            conn.simple("COMMIT")

    def copy_in(self, table, columns, rows):
        """Bulk-load ``rows`` with ``COPY ... FROM STDIN``; the number of rows loaded."""
        with self.connection() as conn:
            return conn.copy_in(table, columns, rows)

    def close(self):
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
