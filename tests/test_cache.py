"""The response cache: one contract mixin run against the raw TTLCache and the ResponseCache."""

import threading

import pytest

from bmad.gateway.cache import ResponseCache, TTLCache
from bmad.config import load
from bmad.errors import ConfigError
from tests.support import FakeClock


class CacheContract:
    """The behaviour every cache front must have; subclasses say how to build, put and get."""

    def make(self, clock, max_entries=3, ttl_seconds=10.0, max_entry_bytes=1024):
        raise NotImplementedError

    def put(self, cache, key, value):
        raise NotImplementedError

    def fetch(self, cache, key):
        raise NotImplementedError

    def raw(self, cache):
        return cache

    def test_miss_then_hit(self):
        clock = FakeClock()
        cache = self.make(clock)
        assert self.fetch(cache, "a") is None
        assert self.put(cache, "a", b"1")
        assert self.fetch(cache, "a") == b"1"
        stats = self.raw(cache).stats()
        assert (stats["hits"], stats["misses"], stats["hit_rate"], stats["entries"]) == (1, 1, 0.5, 1)

    def test_least_recently_used_goes_first(self):
        clock = FakeClock()
        cache = self.make(clock, max_entries=3)
        for key in "abc":
            self.put(cache, key, key.encode())
        assert self.fetch(cache, "a") == b"a"  # now b is the least recently used
        self.put(cache, "d", b"d")
        assert self.fetch(cache, "b") is None
        assert [self.fetch(cache, k) for k in "acd"] == [b"a", b"c", b"d"]
        assert self.raw(cache).stats()["evictions"] == {"capacity": 1, "expired": 0}
        assert len(self.raw(cache)) == 3

    def test_overwrite_does_not_evict(self):
        cache = self.make(FakeClock(), max_entries=2)
        self.put(cache, "a", b"1")
        self.put(cache, "b", b"2")
        self.put(cache, "a", b"3")
        assert self.fetch(cache, "a") == b"3" and self.fetch(cache, "b") == b"2"
        assert self.raw(cache).stats()["evictions"]["capacity"] == 0

    def test_entries_expire_after_their_ttl(self):
        clock = FakeClock()
        cache = self.make(clock, ttl_seconds=10.0)
        self.put(cache, "a", b"1")
        clock.tick(9.999)
        assert self.fetch(cache, "a") == b"1"
        clock.tick(0.001)
        assert self.fetch(cache, "a") is None
        stats = self.raw(cache).stats()
        assert stats["evictions"] == {"capacity": 0, "expired": 1}
        assert stats["entries"] == 0

    def test_a_full_cache_counts_an_expired_victim_as_expired(self):
        clock = FakeClock()
        cache = self.make(clock, max_entries=2, ttl_seconds=10.0)
        self.put(cache, "a", b"1")
        clock.tick(5)
        self.put(cache, "b", b"2")
        clock.tick(6)  # a has expired, b has not
        self.put(cache, "c", b"3")
        assert self.raw(cache).stats()["evictions"] == {"capacity": 0, "expired": 1}
        self.put(cache, "d", b"4")
        assert self.raw(cache).stats()["evictions"] == {"capacity": 1, "expired": 1}

    def test_values_over_the_size_cap_are_not_stored(self):
        cache = self.make(FakeClock(), max_entry_bytes=4)
        assert self.put(cache, "small", b"1234")
        assert not self.put(cache, "big", b"12345")
        assert self.fetch(cache, "big") is None
        assert self.raw(cache).stats()["too_large"] == 1

    def test_a_too_large_refresh_drops_the_old_value(self):
        cache = self.make(FakeClock(), max_entry_bytes=4)
        self.put(cache, "k", b"old")
        assert not self.put(cache, "k", b"new but too large")
        assert self.fetch(cache, "k") is None

    def test_bytes_are_accounted(self):
        cache = self.make(FakeClock(), max_entries=2)
        self.put(cache, "a", b"12")
        self.put(cache, "b", b"123")
        self.put(cache, "a", b"1")
        self.put(cache, "c", b"1234")  # evicts b
        assert self.raw(cache).stats()["bytes"] == 5

    def test_concurrent_use_keeps_the_bounds(self):
        cache = self.make(FakeClock(), max_entries=50)
        barrier = threading.Barrier(4)

        def work(n):
            barrier.wait()
            for i in range(2000):
                self.put(cache, f"{n}-{i % 80}", b"x")
                self.fetch(cache, f"{(n + 1) % 4}-{i % 80}")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = self.raw(cache).stats()
        assert stats["entries"] == 50 == len(self.raw(cache))
        assert stats["bytes"] == 50
        assert stats["hits"] + stats["misses"] == 8000


class TestTTLCache(CacheContract):
    def make(self, clock, max_entries=3, ttl_seconds=10.0, max_entry_bytes=1024):
        return TTLCache(max_entries, ttl_seconds, max_entry_bytes, clock=clock)

    def put(self, cache, key, value):
        return cache.set(key, value)

    def fetch(self, cache, key):
        return cache.get(key)

    def test_per_entry_ttl_and_expire_sweep(self):
        clock = FakeClock()
        cache = self.make(clock, ttl_seconds=100.0)
        cache.set("short", b"1", ttl_seconds=1.0)
        cache.set("long", b"2")
        clock.tick(2)
        assert "short" not in cache and "long" in cache
        assert cache.expire() == 1
        assert len(cache) == 1 and cache.stats()["evictions"]["expired"] == 1

    def test_delete_and_clear(self):
        cache = self.make(FakeClock())
        cache.set("a", b"1")
        assert cache.delete("a") and not cache.delete("a")
        cache.set("b", b"2")
        cache.clear()
        assert len(cache) == 0 and cache.stats()["bytes"] == 0

    def test_rejects_nonsense_bounds(self):
        with pytest.raises(ValueError):
            TTLCache(0)
        with pytest.raises(ValueError):
            TTLCache(10, ttl_seconds=0)


class TestResponseCache(CacheContract):
    def make(self, clock, max_entries=3, ttl_seconds=10.0, max_entry_bytes=1024):
        return ResponseCache(TTLCache(max_entries, ttl_seconds, max_entry_bytes, clock=clock))

    def put(self, cache, key, value):
        return cache.store(key, value)

    def fetch(self, cache, key):
        found = cache.lookup(key)
        return None if found is None else found.body

    def raw(self, cache):
        return cache.cache

    def test_age_counts_whole_seconds_since_stored(self):
        clock = FakeClock()
        cache = self.make(clock)
        cache.store("k", b"v")
        clock.tick(3.7)
        assert cache.lookup("k") == (b"v", {}, 3, None)

    def test_headers_are_kept_and_counted_in_the_size(self):
        cache = self.make(FakeClock(), max_entry_bytes=10)
        assert cache.store("k", b"body", {"X-A": "1"})
        hit = cache.lookup("k")
        assert hit.body == b"body" and hit.headers == {"X-A": "1"} and hit.age == 0
        hit.headers["X-A"] = "changed"
        assert cache.lookup("k").headers == {"X-A": "1"}
        assert not cache.store("k2", b"body", {"X-Long": "123"})

    def test_disabled_neither_reads_nor_writes(self):
        cache = ResponseCache(TTLCache(clock=FakeClock()), enabled=False)
        assert not cache.store("k", b"v")
        assert cache.lookup("k") is None
        assert cache.stats()["entries"] == 0 and cache.stats()["enabled"] is False


MESSAGES = [{"role": "user", "content": "hello"}]


class TestKeys:
    def test_stream_user_and_ids_are_not_part_of_the_key(self):
        rc = ResponseCache(TTLCache(clock=FakeClock()))
        scope = rc.scope_for("alice")
        base = rc.key_for(scope, "openai/gpt-4o-mini", MESSAGES, {"model": "m", "temperature": 0.2})
        same = rc.key_for(scope, "openai/gpt-4o-mini", MESSAGES,
                          {"temperature": 0.2, "model": "m", "stream": True, "user": "x",
                           "stream_options": {"include_usage": True}, "metadata": {"a": 1}})
        assert base == same
        assert len(base) == 64 and int(base, 16) >= 0

    @pytest.mark.parametrize("change", [
        {"route": "anthropic/claude"},
        {"messages": [{"role": "user", "content": "hello!"}]},
        {"params": {"model": "m", "temperature": 0.3}},
        {"params": {"model": "m", "temperature": 0.2, "max_tokens": 5}},
        {"params": {"model": "m", "temperature": 0.2, "tools": [{"type": "function"}]}},
        {"params": {"model": "m", "temperature": 0.2, "some_new_parameter": 1}},
        {"scope": "user:bob"},
    ])
    def test_anything_that_changes_the_answer_changes_the_key(self, change):
        rc = ResponseCache(TTLCache(clock=FakeClock()))
        args = {"scope": "user:alice", "route": "openai/gpt-4o-mini", "messages": MESSAGES,
                "params": {"model": "m", "temperature": 0.2}}
        base = rc.key_for(**args)
        args.update(change)
        assert rc.key_for(**args) != base

    def test_tenants_are_scoped_unless_shared(self):
        scoped = ResponseCache(TTLCache(clock=FakeClock()))
        assert scoped.scope_for("alice") != scoped.scope_for("bob")
        shared = ResponseCache(TTLCache(clock=FakeClock()), shared=True)
        assert shared.scope_for("alice") == shared.scope_for("bob")

    def test_one_tenants_entry_is_invisible_to_another(self):
        rc = ResponseCache(TTLCache(clock=FakeClock()))
        alice = rc.key_for(rc.scope_for("alice"), "r", MESSAGES, {})
        bob = rc.key_for(rc.scope_for("bob"), "r", MESSAGES, {})
        rc.store(alice, b"alice's answer")
        assert rc.lookup(bob) is None
        assert rc.lookup(alice).body == b"alice's answer"


class TestConfig:
    def test_defaults(self):
        rc = ResponseCache.from_config(load(environ={}), clock=FakeClock())
        assert (rc.enabled, rc.shared, rc.cache.max_entries, rc.cache.ttl_seconds, rc.cache.max_entry_bytes) == (
            True, False, 2000, 600.0, 262144)

    @pytest.mark.parametrize("key,value", [("max_entries", 0), ("ttl_seconds", 0), ("max_entry_bytes", -1)])
    def test_bad_values_name_the_key(self, key, value):
        config = load(environ={}, data={"cache": {key: value}})
        with pytest.raises(ConfigError, match=f"cache.{key}"):
            ResponseCache.from_config(config)
