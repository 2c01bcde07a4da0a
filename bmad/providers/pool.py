"""Keep-alive HTTP connections to upstream providers, shared by every thread.

One ``HostPool`` per provider holds that provider's idle connections (at most
``max_connections`` open), and the ``ConnectionPool`` caps the total across
providers. A connection is handed to one request at a time and goes back to
the pool only when its response was read to the end; anything else closes
it, because a half-read response would leave the next request on that
connection reading the wrong bytes (``http.client`` raises
``ResponseNotReady``).

Idle connections the upstream closed are noticed before reuse (the socket
polls readable: EOF or stray bytes), and a request that fails on a reused
connection before any response byte arrived is sent once more, on another
connection checked the same way or a new one: the usual sign of a keep-alive
race, where the upstream closed the connection just as we picked it.

The lock guards only the bookkeeping. Polling, connecting, sending and
reading happen outside it: each is a syscall that gives up the GIL, and a
thread waiting for the GIL while holding the lock would stall every other
request thread on the lock.

Methods for the caller: ``ConnectionPool(max_total, clock)``,
``add_host(...)`` -> ``HostPool``, ``stats()``, ``close()``;
``HostPool.request(...)`` -> ``PooledResponse``; ``PooledResponse.read_all``,
``read_some``, ``release``, ``discard``.
"""

import http.client
import select
import socket
import ssl
import threading
import time

from .cancel import Cancelled

# An idle connection older than this is closed rather than reused: upstream
# load balancers drop idle connections after a minute or so, silently.
IDLE_SECONDS = 50.0
# How far past a ``read_all`` deadline a socket read may still end: within it the socket's timeout
# is left as it is, rather than re-set (a syscall) before every read.
DEADLINE_SLACK_SECONDS = 0.05
READ_SIZE = 65536
STALE_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class _Connection(http.client.HTTPConnection):
    """``HTTPConnection`` that sends a request's head and body in one write.

    The stock one writes them separately: two syscalls and, with Nagle off,
    two packets for every small JSON request.
    """

    def _send_output(self, message_body=None, encode_chunked=False):
        if isinstance(message_body, bytes) and not encode_chunked:
            self._buffer.extend((b"", b""))
            head = b"\r\n".join(self._buffer)
            del self._buffer[:]
            self.send(head + message_body)
            return
        super()._send_output(message_body, encode_chunked)


class _TLSConnection(_Connection, http.client.HTTPSConnection):
    """The same for HTTPS."""


class PoolExhausted(Exception):
    """No connection became free in time (the provider's ``max_connections`` are all in use)."""


class ResponseTooLarge(Exception):
    """The upstream's body is bigger than the limit given to ``read_all``."""


class HostPool:
    """The connections to one upstream host (one provider)."""

    def __init__(self, owner, name, scheme, host, port, *, max_connections, connect_timeout, read_timeout):
        self.owner = owner
        self.name = name
        self.scheme = scheme
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.idle = []  # (connection, idle_since), newest last
        self.open = 0
        self.in_use = 0
        self.created = 0
        self.reused = 0
        self.discarded = 0

    # -- getting and returning connections (bookkeeping under the owner's lock) --------------

    def _acquire(self):
        """Return ``(connection, reused)``; checking an idle one and connecting happen outside the lock."""
        while True:
            conn = self._take()
            if conn is None:
                break
            # Polled outside the lock: a syscall gives up the GIL, and made under the lock every
            # other request thread would queue on the lock until this one got the GIL back.
            if not _looks_closed(conn):
                return conn, True
            with self.owner.cond:
                self.reused -= 1
            self._discard(conn)
        try:
            conn = self._connect()
        except BaseException:
            self._forget()
            raise
        with self.owner.cond:
            self.created += 1
        return conn, False

    def _take(self):
        """The newest idle connection young enough to reuse, counted in use; None once a slot for a new
        one is reserved."""
        owner = self.owner
        deadline = None
        stale = []
        try:
            with owner.cond:
                while True:
                    if owner.closed:
                        raise PoolExhausted(f"the connection pool is closed (provider {self.name})")
                    now = owner.clock()
                    while self.idle:
                        conn, since = self.idle.pop()
                        if now - since > IDLE_SECONDS:
                            self.open -= 1
                            owner.open_total -= 1
                            self.discarded += 1
                            stale.append(conn)
                            continue
                        self.in_use += 1
                        self.reused += 1
                        return conn
                    if self.open < self.max_connections and (owner.open_total < owner.max_total
                                                             or owner._evict_idle_locked(stale)):
                        self.open += 1
                        self.in_use += 1
                        owner.open_total += 1
                        return None
                    if deadline is None:
                        deadline = time.monotonic() + self.connect_timeout
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise PoolExhausted(f"all {self.max_connections} connections to provider {self.name} "
                                            f"stayed busy for {self.connect_timeout:g}s")
                    owner.cond.wait(left)
        finally:
            for conn in stale:
                conn.close()

    def _connect(self):
        if self.scheme == "https":
            conn = _TLSConnection(self.host, self.port, timeout=self.connect_timeout,
                                  context=self.owner.ssl_context())
        else:
            conn = _Connection(self.host, self.port, timeout=self.connect_timeout)
        conn.connect()
        return conn

    def _forget(self):
        """A connection slot that ended (closed or never opened)."""
        with self.owner.cond:
            self.open -= 1
            self.in_use -= 1
            self.owner.open_total -= 1
            self.owner.cond.notify()

    def _release(self, conn):
        with self.owner.cond:
            self.in_use -= 1
            if self.owner.closed:
                self.open -= 1
                self.owner.open_total -= 1
            else:
                self.idle.append((conn, self.owner.clock()))
                conn = None
            self.owner.cond.notify()
        if conn is not None:
            conn.close()

    def _discard(self, conn):
        with self.owner.cond:
            self.discarded += 1
        self._forget()
        conn.close()

    # -- the request ------------------------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, *, timeout=None, cancel=None):
        """Send one request and return its ``PooledResponse`` (status and headers read, body not).

        ``timeout`` bounds each socket read (default: the host's read
        timeout). Connection and timeout errors propagate as ``OSError`` /
        ``http.client.HTTPException``; the caller decides what they mean.
        ``cancel`` (a ``CancelToken``) may abort the call from another
        thread: the socket is shut down and ``Cancelled`` raised.
        """
        timeout = self.read_timeout if timeout is None else timeout
        for attempt in (1, 2):
            _check(cancel)
            conn, reused = self._acquire()
            # Kept here: for a ``Connection: close`` answer ``getresponse`` closes the connection and
            # drops ``conn.sock``, while the response goes on reading from the same socket.
            sock = conn.sock
            if cancel is not None and not cancel.attach(sock):
                self._release(conn)  # nothing was sent on it: still good for the next request
                _check(cancel)
            try:
                if sock.gettimeout() != timeout:
                    sock.settimeout(timeout)
                conn.request(method, path, body=body, headers=headers or {})
                response = conn.getresponse()
            except STALE_ERRORS:
                self._discard(conn)
                _detach(cancel, sock)
                _check(cancel)
                if reused and attempt == 1:
                    continue  # the upstream closed it while idle: once more on a fresh connection
                raise
            except BaseException:
                self._discard(conn)
                _detach(cancel, sock)
                _check(cancel)
                raise
            return PooledResponse(self, conn, sock, response, timeout, cancel)
        raise AssertionError("unreachable")

    def stats(self):
        """This host's figures (read under the owner's lock by ``ConnectionPool.stats``)."""
        return {"host": f"{self.host}:{self.port}", "max": self.max_connections, "open": self.open,
                "idle": len(self.idle), "in_use": self.in_use, "created": self.created, "reused": self.reused,
                "discarded": self.discarded}


class PooledResponse:
    """An upstream response on a pooled connection; give it back with ``release`` or ``discard``."""

    __slots__ = ("pool", "conn", "sock", "response", "status", "headers", "timeout", "done", "cancel")

    def __init__(self, pool, conn, sock, response, timeout, cancel=None):
        self.pool = pool
        self.conn = conn
        self.sock = sock
        self.response = response
        self.status = response.status
        self.headers = response.headers
        self.timeout = timeout
        self.done = False
        self.cancel = cancel

    def header(self, name, default=None):
        """One response header (case-insensitive)."""
        return self.headers.get(name, default)

    def read_all(self, limit, deadline=None, clock=time.monotonic):
        """The whole body, at most ``limit`` bytes (else ``ResponseTooLarge``), then release the connection.

        ``deadline`` (a ``clock`` reading) bounds the whole read, not just
        each socket read, so a slow drip cannot hold the caller forever.
        """
        response = self.response
        parts = []
        total = 0
        try:
            if response.length is not None and response.length > limit:
                raise ResponseTooLarge(f"the upstream announced {response.length} bytes; the limit is {limit}")
            while True:
                if deadline is not None:
                    left = deadline - clock()
                    if left <= 0:
                        raise socket.timeout("the upstream response took longer than the timeout")
                    current = self.sock.gettimeout()
                    if current is None or current > left + DEADLINE_SLACK_SECONDS:
                        self.sock.settimeout(min(self.timeout, left))
                if response.length == 0:
                    break
                chunk = response.read1(READ_SIZE)
                if not chunk:
                    if response.length:  # the upstream closed before the Content-Length it promised
                        raise http.client.IncompleteRead(b"".join(parts), response.length)
                    break
                total += len(chunk)
                if total > limit:
                    raise ResponseTooLarge(f"the upstream response is larger than {limit} bytes")
                parts.append(chunk)
        except BaseException:
            self.discard()
            _check(self.cancel)  # a read cut short by a cancel is a cancel, not an upstream failure
            raise
        self.release()
        return b"".join(parts)

    def read_some(self, timeout=None):
        """The next bytes as they arrive (at most one socket read); b"" at the end of the body."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        return self.response.read1(READ_SIZE)

    def release(self):
        """Give the connection back when the body was read to the end and it may be kept; else close it."""
        if self.done:
            return
        response = self.response
        try:
            if not response.isclosed() and response.length == 0:
                # read1() never marks a fixed-length body finished once its last byte was
                # read; read() does (and returns b"" then). Any other open response means
                # the body was not read to the end, and the connection cannot be reused.
                response.read()
            reusable = response.isclosed() and not response.will_close
        except (OSError, http.client.HTTPException):
            reusable = False
        self.done = True
        _detach(self.cancel, self.sock)
        if reusable and not (self.cancel is not None and self.cancel.cancelled):
            self.pool._release(self.conn)
        else:
            self.pool._discard(self.conn)

    def discard(self):
        """Close the connection (the body was not read to the end, or it failed)."""
        if self.done:
            return
        self.done = True
        _detach(self.cancel, self.sock)
        self.pool._discard(self.conn)


def _check(cancel):
    if cancel is not None and cancel.cancelled:
        raise Cancelled("the call was cancelled") from None


def _detach(cancel, sock):
    if cancel is not None:
        cancel.detach(sock)


def _looks_closed(conn):
    """True when an idle connection is readable: the upstream closed it (EOF) or sent stray bytes."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


class ConnectionPool:
    """Every provider's connections, with one cap on the total open at once."""

    def __init__(self, max_total=200, clock=time.monotonic):
        self.max_total = max_total
        self.clock = clock
        self.cond = threading.Condition(threading.Lock())  # never re-entered
        self.open_total = 0
        self.closed = False
        self.hosts = {}
        self._ssl = None

    def ssl_context(self):
        """One verifying TLS context for every HTTPS upstream (built on first use)."""
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def add_host(self, name, scheme, host, port, *, max_connections=50, connect_timeout=5.0, read_timeout=60.0):
        """Register the host of provider ``name`` and return its ``HostPool``."""
        pool = HostPool(self, name, scheme, host, port, max_connections=max_connections,
                        connect_timeout=connect_timeout, read_timeout=read_timeout)
        with self.cond:
            self.hosts[name] = pool
        return pool

    def _evict_idle_locked(self, closing):
        """Free one slot of the total by closing another host's idle connection; False when none is idle."""
        for pool in self.hosts.values():
            if pool.idle:
                conn, _ = pool.idle.pop(0)
                pool.open -= 1
                pool.discarded += 1
                self.open_total -= 1
                closing.append(conn)
                return True
        return False

    def stats(self):
        """Open, idle, in-use, created and reused connections, in total and per provider."""
        with self.cond:
            hosts = {name: pool.stats() for name, pool in self.hosts.items()}
        totals = {key: sum(h[key] for h in hosts.values()) for key in ("open", "idle", "in_use", "created",
                                                                         "reused", "discarded")}
        return {"max_total": self.max_total, **totals, "providers": hosts}

    def close(self):
        """Close every idle connection; connections in use close when they are given back."""
        with self.cond:
            self.closed = True
            idle = []
            for pool in self.hosts.values():
                idle.extend(conn for conn, _ in pool.idle)
                pool.open -= len(pool.idle)
                self.open_total -= len(pool.idle)
                pool.idle.clear()
            self.cond.notify_all()
        for conn in idle:
            conn.close()
