"""Cuts connections that are too slow to send a request, or idle too long.

Each connection arms a deadline while it waits for (or reads) a request head
or body and disarms it while the request is handled. One thread shuts down
the sockets whose deadline passed, so a trickle of bytes (slowloris) cannot
hold a connection longer than the header timeout. When the server is at its
connection cap it can evict the longest-waiting armed connection to make room.
"""

import socket
import threading
import time


class Watchdog:
    """Deadlines per connection socket, enforced by one background thread."""

    def __init__(self, interval=0.25, clock=time.monotonic):
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._armed = {}  # socket -> (deadline, armed_since)
        self._stop = threading.Event()
        self._thread = None
        self.cut = 0

    def start(self):
        """Start the enforcing thread."""
        self._thread = threading.Thread(target=self._run, name="bmad-watchdog", daemon=True)
        self._thread.start()

    def stop(self):
        """Stop the enforcing thread."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)

    def arm(self, sock, seconds, since=None):
        """Cut ``sock`` unless disarmed within ``seconds``."""
        now = self.clock()
        with self._lock:
            self._armed[sock] = (now + seconds, now if since is None else since)

    def disarm(self, sock):
        """Stop watching ``sock``."""
        with self._lock:
            self._armed.pop(sock, None)

    def expire_now(self):
        """Cut every connection whose deadline has passed; returns how many."""
        now = self.clock()
        with self._lock:
            expired = [s for s, (deadline, _) in self._armed.items() if deadline <= now]
            for s in expired:
                del self._armed[s]
        for s in expired:
            _shut(s)
        self.cut += len(expired)
        return len(expired)

    def evict_oldest(self):
        """Cut the connection that has waited longest; False when none waits."""
        with self._lock:
            if not self._armed:
                return False
            sock = min(self._armed, key=lambda s: self._armed[s][1])
            del self._armed[sock]
        _shut(sock)
        self.cut += 1
        return True

    def cut_all(self):
        """Cut every armed (idle or slow) connection, e.g. when draining."""
        with self._lock:
            socks = list(self._armed)
            self._armed.clear()
        for s in socks:
            _shut(s)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.expire_now()


def _shut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
