"""The bounded queue between the recorder and the writer.

A deque guarded by the recorder's own lock: the recorder already holds that
lock to assign sessions and update the live windows, so putting an event
costs one ``append`` and no second lock, and the writer takes a whole batch
in one critical section. Control markers are always accepted, so a flush or
a stop can never be refused by a full queue.
"""

import threading
from collections import deque


class EventQueue:
    """A FIFO of event rows (bounded by ``maxsize``) and control markers (unbounded, few)."""

    def __init__(self, maxsize, lock):
        self.maxsize = maxsize
        self.lock = lock
        self.items = deque()
        self._ready = threading.Condition(lock)
        self._waiting = False
        self._wake_at = 1  # how many items the waiting writer wants before it is woken

    def put_locked(self, item):
        """Append ``item`` unless the queue is full; the caller holds ``lock``. True when queued."""
        items = self.items
        if len(items) >= self.maxsize:
            return False
        items.append(item)
        # Waking the writer for every event costs a thread switch per request under load;
        # it is woken once the count it waits for has arrived (its timeout covers the rest).
        if self._waiting and len(items) >= self._wake_at:
            self._ready.notify()
        return True

    def put_control(self, item):
        """Append a control marker, whatever the queue's length."""
        with self.lock:
            self.items.append(item)
            self._ready.notify()

    def take(self, limit, timeout, wait_for=1):
        """Up to ``limit`` items, first waiting up to ``timeout`` seconds for ``wait_for`` of them (or a
        control marker); whatever is there then, [] when none came."""
        with self.lock:
            items = self.items
            if len(items) < wait_for and timeout > 0:
                self._waiting = True
                self._wake_at = max(1, wait_for)
                try:
                    self._ready.wait(timeout)
                finally:
                    self._waiting = False
            count = min(limit, len(items))
            return [items.popleft() for _ in range(count)]

    def qsize(self):
        """Items waiting now."""
        return len(self.items)
