"""A Redis client on the standard library: RESP2 framing, pooled connections, pipelines, scripts.

``Redis.from_url("redis://[user:pass@]host:port/db")`` (``rediss://`` for
TLS through ``ssl``) gives a client; ``execute(*args)`` sends one command
and returns its reply, ``pipeline(commands)`` sends many in one write and
reads their replies in order, ``script(source)`` gives a callable that runs
a Lua script by its SHA-1 (loading it once after a server restart).

Replies: simple strings and bulk strings as ``bytes`` (``None`` for a null
bulk), integers as ``int``, arrays as ``list``; a ``-ERR ...`` reply raises
``RedisError`` carrying the server's code. A connection that fails mid-reply
raises ``RedisConnectionError`` and is never reused; an idle connection is
checked before reuse. The password is never in an error message or a repr.
"""

import hashlib
import select
import socket
import ssl
import threading
import time
from urllib.parse import unquote, urlsplit

CRLF = b"\r\n"
MAX_BULK_BYTES = 512 * 1024 * 1024
MAX_ARRAY_ITEMS = 1_000_000
MAX_LINE_BYTES = 64 * 1024
READ_CHUNK = 65536


class RedisError(Exception):
    """An error reply from the server; ``code`` is its first word (``ERR``, ``WRONGTYPE``, ``NOSCRIPT``...)."""

    def __init__(self, message):
        super().__init__(message)
        self.code = message.split(" ", 1)[0] if message else "ERR"


class RedisConnectionError(Exception):
    """The server could not be reached, or the connection broke before a whole reply arrived."""


def encode(args):
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode("utf-8")
        elif isinstance(arg, bool):
            raise TypeError("a boolean is ambiguous as a Redis argument: send 0/1 or a string")
        elif isinstance(arg, (int, float)):
            data = repr(arg).encode("ascii")
        else:
            raise TypeError(f"cannot send a {type(arg).__name__} to Redis")
        out.append(b"$%d\r\n" % len(data))
        out.append(data)
        out.append(CRLF)
    return b"".join(out)


class Reader:
    """Parses RESP2 replies from a socket's bytes (framing in one place)."""

    def __init__(self, recv):
        self.recv = recv
        self.buf = bytearray()

    def _fill(self):
        chunk = self.recv(READ_CHUNK)
        if not chunk:
            raise RedisConnectionError("the Redis server closed the connection mid-reply")
        self.buf += chunk

    def _line(self):
        while True:
            end = self.buf.find(CRLF)
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[:end + 2]
                return line
            if len(self.buf) > MAX_LINE_BYTES:
                raise RedisConnectionError("a Redis reply line is too long")
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data = bytes(self.buf[:n])
        if self.buf[n:n + 2] != CRLF:
            raise RedisConnectionError("a Redis bulk string is not followed by CRLF")
        del self.buf[:n + 2]
        return data

    def reply(self):
        """The next whole reply (an error reply is returned as a ``RedisError``, not raised)."""
        line = self._line()
        if not line:
            raise RedisConnectionError("an empty Redis reply line")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            if n > MAX_BULK_BYTES:
                raise RedisConnectionError(f"a Redis bulk string of {n} bytes is over the limit")
            return self._exact(n)
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            if n > MAX_ARRAY_ITEMS:
                raise RedisConnectionError(f"a Redis array of {n} items is over the limit")
            return [self.reply() for _ in range(n)]
        raise RedisConnectionError(f"an unknown Redis reply type {kind!r}")


class Connection:
    """One socket to the server, authenticated and on its database."""

    def __init__(self, host, port, *, username=None, password=None, db=0, tls=None, timeout=2.0,
                 connect_timeout=2.0, monotonic=time.monotonic):
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as e:
            raise RedisConnectionError(f"cannot connect to Redis at {host}:{port}: {type(e).__name__}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=host)
            except (OSError, ssl.SSLError) as e:
                sock.close()
                raise RedisConnectionError(f"TLS to Redis at {host}:{port} failed: {type(e).__name__}") from None
        sock.settimeout(timeout)
        self.sock = sock
        self.reader = Reader(self._recv)
        self.monotonic = monotonic
        self.used_at = monotonic()
        self.broken = False
        try:
            if password is not None:
                self.call(*(("AUTH", username, password) if username else ("AUTH", password)))
            if db:
                self.call("SELECT", db)
        except BaseException:
            self.close()
            raise

    def _recv(self, n):
        try:
            return self.sock.recv(n)
        except OSError as e:
            self.broken = True
            raise RedisConnectionError(f"reading from Redis failed: {type(e).__name__}") from None

    def send(self, payload):
        """Write whole commands."""
        try:
            self.sock.sendall(payload)
        except OSError as e:
            self.broken = True
            raise RedisConnectionError(f"writing to Redis failed: {type(e).__name__}") from None

    def read(self):
        """The next reply; a connection that failed mid-reply is marked broken."""
        try:
            return self.reader.reply()
        except RedisConnectionError:
            self.broken = True
            raise
        except ValueError:
            self.broken = True
            raise RedisConnectionError("a Redis reply is malformed") from None

    def call(self, *args):
        """One command; raises its error reply."""
        self.send(encode(args))
        reply = self.read()
        self.used_at = self.monotonic()
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def stale(self):
        """True when this idle connection is readable: the server closed it, or it is out of step."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self):
        """Close the socket."""
        try:
            self.sock.close()
        except OSError:
            pass


class Redis:
    """A pool of connections to one Redis server. Safe to share between threads."""

    def __init__(self, host="127.0.0.1", port=6379, *, username=None, password=None, db=0, tls=None,
                 timeout=2.0, connect_timeout=2.0, max_idle=8, monotonic=time.monotonic):
        self.host = host
        self.port = port
        self._options = dict(username=username, password=password, db=db, tls=tls, timeout=timeout,
                             connect_timeout=connect_timeout, monotonic=monotonic)
        self.max_idle = max_idle
        self._idle = []
        self._lock = threading.Lock()
        self._scripts = {}

    @classmethod
    def from_url(cls, url, **options):
        """A client for ``redis://[user:pass@]host:port/db`` or ``rediss://`` (TLS, verified)."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("a Redis URL starts with redis:// or rediss://")
        db = parts.path.strip("/") or "0"
        if not db.isdigit():
            raise ValueError("the Redis URL's path must be a database number, such as /0")
        tls = ssl.create_default_context() if parts.scheme == "rediss" else None
        return cls(parts.hostname or "127.0.0.1", parts.port or 6379,
                   username=unquote(parts.username) if parts.username and parts.password is not None else None,
                   password=unquote(parts.password) if parts.password is not None
                   else (unquote(parts.username) if parts.username else None),
                   db=int(db), tls=options.pop("tls", tls), **options)

    def __repr__(self):
        return f"Redis({self.host}:{self.port}/{self._options['db']})"

    def _acquire(self):
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return Connection(self.host, self.port, **self._options)
            if not conn.stale():  # checked outside the lock: it is a syscall
                return conn
            conn.close()

    def _release(self, conn):
        if conn.broken:
            conn.close()
            return
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def execute(self, *args):
        """Send one command and return its reply (raises ``RedisError`` for an error reply)."""
        conn = self._acquire()
        try:
            return conn.call(*args)
        except RedisError:
            raise
        except BaseException:
            conn.broken = True
            raise
        finally:
            self._release(conn)

    def pipeline(self, commands):
        """Send ``commands`` (sequences of arguments) in one write; their replies in order.

        An error reply is returned in its place as a ``RedisError``, so one failing command does not hide
        the others' results.
        """
        if not commands:
            return []
        conn = self._acquire()
        try:
            conn.send(b"".join(encode(tuple(c)) for c in commands))
            replies = [conn.read() for _ in commands]
            conn.used_at = conn.monotonic()
            return replies
        except BaseException:
            conn.broken = True
            raise
        finally:
            self._release(conn)

    def script(self, source):
        """A callable ``(keys, args) -> reply`` running ``source`` by its SHA-1 (EVALSHA, loading it when needed)."""
        sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

        def run(keys=(), args=()):
            try:
                return self.execute("EVALSHA", sha, len(keys), *keys, *args)
            except RedisError as e:
                if e.code != "NOSCRIPT":
                    raise
            return self.execute("EVAL", source, len(keys), *keys, *args)
        return run

    def close(self):
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
