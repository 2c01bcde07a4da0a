"""Abandoning an upstream call that is in flight: a cancel token the caller sets, the pool obeys.

Whoever may give up on a call (a workflow run being cancelled) makes a
``CancelToken`` and puts it on the ``ChatRequest``; the connection pool
attaches the socket of the request it sends to the token. ``cancel()`` shuts
that socket down, so the provider sees its connection close and stops
generating (it is billed for what it produced so far, not for the rest),
and the blocked read returns at once; the pool then raises ``Cancelled``,
which no router retries or fails over.
"""

import socket
import threading


class Cancelled(Exception):
    """The caller cancelled the call; it was abandoned, not failed."""


class CancelToken:
    """A one-way flag that, once set, shuts down every socket attached to it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cancelled = False
        self._sockets = set()

    @property
    def cancelled(self):
        """True once ``cancel()`` was called."""
        return self._cancelled

    def cancel(self):
        """Set the flag and shut down the sockets in use (idempotent)."""
        with self._lock:
            self._cancelled = True
            sockets, self._sockets = list(self._sockets), set()
        # Shut down outside the lock: a syscall; the reader blocked in recv() wakes with EOF.
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its owner

    def attach(self, sock):
        """Watch ``sock`` until ``detach``; False (not attached) when already cancelled."""
        with self._lock:
            if self._cancelled:
                return False
            self._sockets.add(sock)
            return True

    def detach(self, sock):
        """Stop watching ``sock`` (its request is over)."""
        with self._lock:
            self._sockets.discard(sock)
