"""The response cache as a pipeline plugin.

By the call's ``cache_mode`` (``Cache-Control`` on HTTP, a run's ``cache``
for workflow steps):

* ``no-store`` (or ``cache.enabled`` false): no lookup, nothing stored;
  ``X-Cache: BYPASS`` (no header at all when the cache is off).
* ``no-cache``: no lookup; the answer refreshes the entry; ``X-Cache: MISS``.
* ``default``: a lookup: ``X-Cache: HIT`` with ``Age`` (whole seconds) and a
  ``Completion`` with ``attempts`` 0, or ``MISS`` and the call goes on.

The key is the caller's scope, the resolved route (so two aliases with the
same candidates share answers), the messages and the output-affecting
parameters; it is left in ``call.state["cache_key"]`` for de-duplication.
Only successful non-streamed answers are stored (a partial stream never
is); a streamed request whose answer is cached gets it replayed as a stream
by its API shape's renderer.
"""

from .cache import CAPACITY, EXPIRED
from .results import Completion

BYPASS, MISS, HIT = "BYPASS", "MISS", "HIT"
DEFAULT, NO_CACHE, NO_STORE = "default", "no-cache", "no-store"


def cache_mode(headers):
    """``no-store``, ``no-cache`` or ``default`` from a request's Cache-Control (and HTTP/1.0 Pragma)."""
    value = headers.get("cache-control")
    directives = {d.strip().split("=", 1)[0].lower() for d in value.split(",")} if value else ()
    if "no-store" in directives:
        return NO_STORE
    if "no-cache" in directives or "no-cache" in headers.get("pragma", "").lower():
        return NO_CACHE
    return DEFAULT


class CachePlugin:
    """Answers repeated calls from the response cache and stores fresh answers."""

    name = "cache"

    def __init__(self, cache, route_key, events):
        self.cache = cache
        self.route_key = route_key
        self.events = events

    def key(self, call):
        """The call's cache key: its caller's scope, resolved route, messages and output-affecting params."""
        chat = call.chat
        return self.cache.key_for(self.cache.scope_for(call.user), self.route_key(chat.model), chat.messages,
                                  chat.params)

    def pre(self, call):
        """Look the call up (or say why not)."""
        if not self.cache.enabled:
            return None
        mode = call.cache_mode
        if mode == NO_STORE:
            call.headers["X-Cache"] = BYPASS
            return None
        chat = call.chat
        key = call.state["cache_key"] = self.key(call)
        if mode == DEFAULT:
            found = self.cache.lookup(key)
            if found is not None:
                call.headers["X-Cache"] = HIT
                call.headers["Age"] = str(found.age)
                call.state["cache_hit"] = True
                self.events.record("cache_hit", user_id=call.user, route=call.origin,
                                   tool=(chat.tool or {}).get("id"))
                return Completion.cached(found.body, found.meta)
        call.headers["X-Cache"] = MISS
        return None

    def post(self, call, result, error):
        """Store a fresh, successful, non-streamed answer."""
        key = call.state.get("cache_key")
        if key is None or error is not None or call.state.get("cache_hit") or not isinstance(result, Completion):
            return
        if not call.state.get("coalesced"):  # a coalesced copy: its leader stored it
            self.cache.store(key, result.encoded(), meta=result.meta())


def register_metrics(metrics, response_cache):
    """The cache's counters and gauge; the cache keeps its own counts (no metric calls on its hot path),
    copied in at scrape time."""
    hits = metrics.collected_counter("bmad_cache_hits_total", "Response cache lookups answered from the cache.")
    misses = metrics.collected_counter("bmad_cache_misses_total", "Response cache lookups that found nothing.")
    evictions = metrics.collected_counter("bmad_cache_evictions_total", "Response cache entries evicted, by reason.",
                                          ("reason",))
    entries = metrics.gauge("bmad_cache_entries", "Entries in the response cache.")

    def collect():
        stats = response_cache.cache.stats()
        hits.set(stats["hits"])
        misses.set(stats["misses"])
        for reason in (CAPACITY, EXPIRED):
            evictions.set(stats["evictions"].get(reason, 0), reason=reason)
        entries.set(stats["entries"])

    metrics.add_collector(collect)
