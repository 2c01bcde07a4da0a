"""The response cache: an LRU with per-entry TTL, and the keys it is used with.

``TTLCache`` is the data structure: O(1) ``get``/``set`` on an ``OrderedDict``
(a C-implemented dict + doubly linked list), a clock passed to the
constructor, and one lock held only around dictionary work, never around
I/O. ``ResponseCache`` is what the service uses: canonical request keys,
scoped per tenant, storing encoded response bodies.

Methods for the caller: ``TTLCache.get``, ``get_entry``, ``set``, ``delete``,
``expire``, ``clear``, ``stats``; ``ResponseCache.key_for``, ``lookup`` -> ``Hit``,
``store``, ``stats``.
"""

import hashlib
import json
import threading
import time
from collections import OrderedDict, namedtuple

from ..errors import ConfigError

CAPACITY = "capacity"
EXPIRED = "expired"

# Request fields that never change what the model answers: transport
# (``stream``, ``stream_options`` - a cached answer can be replayed either
# way), attribution (``user``, ``metadata``) and ids. Everything else in the
# body is part of the key, so an unknown new parameter can never make two
# different answers collide.
NON_OUTPUT_PARAMS = frozenset({
    "stream", "stream_options", "user", "metadata", "store", "service_tier", "request_id", "x_request_id",
    "messages",
})
KEY_VERSION = "bmad-cache-v1"
SHARED_SCOPE = "*"


class Entry:
    """One cached value with the time it was stored and the time it expires."""

    __slots__ = ("value", "size", "stored_at", "expires_at")

    def __init__(self, value, size, stored_at, expires_at):
        self.value = value
        self.size = size
        self.stored_at = stored_at
        self.expires_at = expires_at


class TTLCache:
    """A thread-safe LRU cache whose entries also expire after a time to live.

    ``max_entries`` bounds the number of entries (the least recently used one
    goes first); ``max_entry_bytes`` refuses values whose ``sizeof`` is larger;
    ``ttl_seconds`` is the default lifetime, ``clock`` returns seconds.
    """

    def __init__(self, max_entries=2000, ttl_seconds=600.0, max_entry_bytes=256 * 1024, *,
                 clock=time.monotonic, sizeof=len):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be greater than 0")
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.max_entry_bytes = max_entry_bytes
        self.clock = clock
        self.sizeof = sizeof
        self._data = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.too_large = 0
        self.evictions = {CAPACITY: 0, EXPIRED: 0}

    def __len__(self):
        return len(self._data)

    def __contains__(self, key):
        with self._lock:
            entry = self._data.get(key)
            return entry is not None and entry.expires_at > self.clock()

    def get_entry(self, key):
        """Return the live ``Entry`` for ``key`` (marking it recently used), or None; counts a hit or a miss."""
        now = self.clock()
        with self._lock:
            entry = self._data.get(key)
            if entry is not None:
                if entry.expires_at > now:
                    self._data.move_to_end(key)
                    self.hits += 1
                    return entry
                self._remove(key, EXPIRED)
            self.misses += 1
            return None

    def get(self, key, default=None):
        """Return the live value for ``key`` or ``default``."""
        entry = self.get_entry(key)
        return default if entry is None else entry.value

    def set(self, key, value, ttl_seconds=None):
        """Store ``value``; returns False (and stores nothing) when it is larger than ``max_entry_bytes``."""
        size = self.sizeof(value)
        if size > self.max_entry_bytes:
            with self._lock:
                self.too_large += 1
                if key in self._data:  # an older answer must not outlive the refresh that replaced it
                    self._remove(key, None)
            return False
        now = self.clock()
        entry = Entry(value, size, now, now + (self.ttl_seconds if ttl_seconds is None else ttl_seconds))
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            while len(self._data) >= self.max_entries:
                oldest_key, oldest = next(iter(self._data.items()))
                self._remove(oldest_key, EXPIRED if oldest.expires_at <= now else CAPACITY)
            self._data[key] = entry
            self._bytes += size
        return True

    def delete(self, key):
        """Remove ``key``; returns True when it was there."""
        with self._lock:
            if key not in self._data:
                return False
            self._remove(key, None)
            return True

    def expire(self):
        """Drop every expired entry now; returns how many went (O(n): for housekeeping, not per request)."""
        now = self.clock()
        with self._lock:
            dead = [k for k, e in self._data.items() if e.expires_at <= now]
            for key in dead:
                self._remove(key, EXPIRED)
        return len(dead)

    def clear(self):
        """Drop every entry (not counted as evictions)."""
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def _remove(self, key, reason):
        entry = self._data.pop(key)
        self._bytes -= entry.size
        if reason is not None:
            self.evictions[reason] += 1

    def stats(self):
        """Counters and sizes: hits, misses, hit_rate, entries, bytes, evictions by reason."""
        with self._lock:
            hits, misses = self.hits, self.misses
            return {"hits": hits, "misses": misses,
                    "hit_rate": round(hits / (hits + misses), 4) if hits + misses else 0.0,
                    "entries": len(self._data), "max_entries": self.max_entries, "bytes": self._bytes,
                    "too_large": self.too_large, "evictions": dict(self.evictions)}


class CachedAnswer:
    """A stored answer: its encoded body, the headers that describe it, and what made it
    (``meta``: any small value the owner wants back); ``len`` is its size in bytes."""

    __slots__ = ("body", "headers", "meta")

    def __init__(self, body, headers=None, meta=None):
        self.body = body
        self.headers = dict(headers or {})
        self.meta = meta

    def __len__(self):
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers.items())


Hit = namedtuple("Hit", "body headers age meta")


def canonical_json(value):
    """``value`` as canonical JSON bytes: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=str).encode("utf-8")


class ResponseCache:
    """Cached response bodies keyed by the canonical request, scoped per tenant.

    With ``shared`` false (the default) the scope is the caller's user id, so
    one user's answer is never served to another; with ``shared`` true every
    caller shares one scope.
    """

    def __init__(self, cache, *, enabled=True, shared=False):
        self.cache = cache
        self.enabled = enabled
        self.shared = shared

    @classmethod
    def from_config(cls, config, clock=time.monotonic):
        """Build from the ``cache`` config section; ConfigError names a bad key."""
        section = config["cache"]
        if section["max_entries"] < 1:
            raise ConfigError("config key 'cache.max_entries' must be at least 1")
        if section["ttl_seconds"] <= 0:
            raise ConfigError("config key 'cache.ttl_seconds' must be greater than 0")
        if section["max_entry_bytes"] < 0:
            raise ConfigError("config key 'cache.max_entry_bytes' must not be negative")
        cache = TTLCache(section["max_entries"], section["ttl_seconds"], section["max_entry_bytes"], clock=clock)
        return cls(cache, enabled=section["enabled"], shared=section["shared"])

    def scope_for(self, user):
        """The key scope for ``user``: the user id, or one shared scope when ``cache.shared``."""
        return SHARED_SCOPE if self.shared else f"user:{user}"

    def key_for(self, scope, route, messages, params):
        """The cache key: SHA-256 hex of the canonical (scope, route, messages, output-affecting params).

        ``route`` is the resolved model route (any JSON value); ``params`` the
        rest of the request body, from which ``NON_OUTPUT_PARAMS`` are dropped.
        """
        kept = {k: v for k, v in (params or {}).items() if k not in NON_OUTPUT_PARAMS}
        doc = [KEY_VERSION, scope, route, messages, kept]
        return hashlib.sha256(canonical_json(doc)).hexdigest()

    def lookup(self, key):
        """Return the cached ``Hit`` (body, headers, age in whole seconds), or None (also when disabled)."""
        if not self.enabled:
            return None
        entry = self.cache.get_entry(key)
        if entry is None:
            return None
        answer = entry.value
        return Hit(answer.body, dict(answer.headers), max(0, int(self.cache.clock() - entry.stored_at)), answer.meta)

    def store(self, key, body, headers=None, meta=None):
        """Cache an encoded response ``body`` (bytes) and the ``headers`` to replay with it.

        False when disabled or when it is larger than ``max_entry_bytes``.
        """
        if not self.enabled:
            return False
        return self.cache.set(key, CachedAnswer(body, headers, meta))

    def stats(self):
        """The cache's stats plus ``enabled`` and ``shared``."""
        stats = self.cache.stats()
        stats.update(enabled=self.enabled, shared=self.shared, ttl_seconds=self.cache.ttl_seconds)
        return stats
