"""The response cache shared by every process through Redis.

``SharedResponseCache`` has the interface of ``bmad.gateway.cache.ResponseCache``
(``enabled``, ``scope_for``, ``key_for``, ``lookup``, ``store``, ``stats``,
and ``cache.stats()`` for the metrics), so the cache plugin uses it
unchanged. Entries are ``SET`` with a ``PX`` expiry of ``cache.ttl_seconds``;
how many fit is the Redis server's own ``maxmemory`` and eviction policy
(``allkeys-lru`` is the one to set). When Redis cannot be reached the cache
is bypassed: lookups miss and nothing is stored, and requests go on.
"""

import json
import threading
import time

from ..gateway.cache import CachedAnswer, Hit, ResponseCache
from .redis import RedisConnectionError, RedisError

KEY_PREFIX = "bmad:cache:"


class _Counts:
    """This process's view of the shared cache, in the shape of ``TTLCache.stats()``."""

    def __init__(self, ttl_seconds, max_entry_bytes):
        self.ttl_seconds = ttl_seconds
        self.max_entry_bytes = max_entry_bytes
        self.hits = self.misses = self.too_large = 0
        self._lock = threading.Lock()

    def count(self, name):
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def stats(self):
        with self._lock:
            hits, misses = self.hits, self.misses
        return {"hits": hits, "misses": misses, "hit_rate": round(hits / (hits + misses), 4) if hits + misses else 0.0,
                "entries": 0, "max_entries": 0, "bytes": 0, "too_large": self.too_large, "evictions": {}}


class SharedResponseCache(ResponseCache):
    """Cached answers in Redis, scoped per tenant as the local cache is."""

    def __init__(self, redis, *, health, ttl_seconds, max_entry_bytes, enabled=True, shared=False, clock=time.time):
        super().__init__(_Counts(ttl_seconds, max_entry_bytes), enabled=enabled, shared=shared)
        self.redis = redis
        self.health = health
        self.clock = clock

    @classmethod
    def from_config(cls, config, redis, health, clock=time.time):
        """Built from the ``cache`` section (its limits checked as the local cache checks them)."""
        local = ResponseCache.from_config(config, clock=clock)
        section = config["cache"]
        return cls(redis, health=health, ttl_seconds=local.cache.ttl_seconds, max_entry_bytes=section["max_entry_bytes"],
                   enabled=local.enabled, shared=local.shared, clock=clock)

    def lookup(self, key):
        """The cached ``Hit``, or None (also when Redis cannot be reached)."""
        if not self.enabled:
            return None
        try:
            raw = self.redis.execute("GET", KEY_PREFIX + key)
        except (RedisConnectionError, RedisError) as e:
            self.health.failed(e)
            return None
        self.health.ok()
        if raw is None:
            self.cache.count("misses")
            return None
        try:
            doc = json.loads(raw)
            body = doc["b"].encode("utf-8")
            meta = tuple(doc["m"]) if doc.get("m") is not None else None
        except (ValueError, KeyError, TypeError, AttributeError):
            self.cache.count("misses")
            return None
        self.cache.count("hits")
        return Hit(body, dict(doc.get("h") or {}), max(0, int(self.clock() - doc.get("t", 0))), meta)

    def store(self, key, body, headers=None, meta=None):
        """Store an encoded answer with the TTL; False when disabled, too large or Redis is out."""
        if not self.enabled:
            return False
        if len(CachedAnswer(body, headers)) > self.cache.max_entry_bytes:
            self.cache.count("too_large")
            return False
        doc = json.dumps({"b": body.decode("utf-8"), "h": dict(headers or {}), "m": list(meta) if meta else None,
                          "t": self.clock()}, separators=(",", ":"), ensure_ascii=False)
        try:
            self.redis.execute("SET", KEY_PREFIX + key, doc, "PX", int(self.cache.ttl_seconds * 1000))
        except (RedisConnectionError, RedisError) as e:
            self.health.failed(e)
            return False
        self.health.ok()
        return True

    def stats(self):
        """This process's hit and miss counts, and where the entries live."""
        stats = self.cache.stats()
        stats.update(enabled=self.enabled, shared=self.shared, ttl_seconds=self.cache.ttl_seconds, backend="redis")
        return stats
