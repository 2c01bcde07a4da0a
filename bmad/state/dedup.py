"""De-duplication across processes: one leader per key cluster-wide, the others wait for its answer.

``SharedDedupPlugin`` stands where ``DedupPlugin`` does in the pipeline and
first coalesces identical calls inside this process (``SingleFlight``);
the one call left per process then asks Redis to lead:
``SET bmad:flight:{key} NX PX {timeout}``. The process that gets the key
calls the provider and, when the call succeeded, publishes the answer under
``bmad:flight:{key}:answer:{token}`` before it lets go of the key; a process that
did not get it polls for that answer and returns it (``X-Dedup:
coalesced``). When the leader fails, or the key goes away without an
answer, a waiter makes its own call: a duplicate upstream call is the
worst outcome, never a lost or wrong answer. When Redis cannot be reached
the call goes on as this process's own. The answer is published under the
leader's own token, so a waiter never takes the answer of an earlier flight.
"""

import json
import secrets
import time

from ..gateway.results import Completion
from .redis import RedisConnectionError, RedisError

KEY_PREFIX = "bmad:flight:"
ANSWER_TTL_MS = 30_000
POLL_SECONDS = 0.01


class SharedDedupPlugin:
    """The pipeline's de-duplication, across every process on one Redis."""

    name = "dedup"

    def __init__(self, local, redis, *, health, timeout, sleep=time.sleep, monotonic=time.monotonic):
        self.local = local  # a DedupPlugin: coalescing inside this process comes first
        self.redis = redis
        self.health = health
        self.timeout = timeout
        self.sleep = sleep
        self.monotonic = monotonic

    def pre(self, call):
        """Coalesce in this process, then lead or follow cluster-wide."""
        answer = self.local.pre(call)
        if answer is not None or "flight" not in call.state:
            return answer
        key = KEY_PREFIX + call.state["cache_key"]
        token = secrets.token_hex(8)
        deadline = self.monotonic() + self.timeout
        try:
            while True:
                if self.redis.execute("SET", key, token, "NX", "PX", int(self.timeout * 1000)) is not None:
                    call.state["cluster_flight"] = (key, token)
                    return None
                leader = self.redis.execute("GET", key)
                published = self._wait_for(key, leader, deadline) if leader is not None else None
                if published is not None:
                    self.health.ok()
                    call.state["coalesced"] = True
                    call.headers["X-Dedup"] = "coalesced"
                    doc = json.loads(published)
                    return Completion.cached(doc["b"].encode("utf-8"), tuple(doc["m"]))
                if leader is not None:
                    return None  # the leader failed or took too long: make our own call
        except (RedisConnectionError, RedisError) as e:
            self.health.failed(e)
            return None

    def _wait_for(self, key, leader, deadline):
        """The answer ``leader`` publishes, or None once it let go of the key without one (or time ran out)."""
        answer_key = key + ":answer:" + leader.decode("ascii", "replace")
        while self.monotonic() < deadline:
            published, current = self.redis.pipeline([("GET", answer_key), ("GET", key)])
            if isinstance(published, bytes):
                return published
            if current != leader:
                return None
            self.sleep(POLL_SECONDS)
        return None

    def post(self, call, result, error):
        """Publish a fresh answer for the other processes, let go of the key, then release local waiters."""
        flight = call.state.get("cluster_flight")
        if flight is not None:
            key, token = flight
            try:
                if isinstance(result, Completion) and error is None:
                    doc = json.dumps({"b": result.encoded().decode("utf-8"), "m": list(result.meta())},
                                     separators=(",", ":"), ensure_ascii=False)
                    self.redis.execute("SET", key + ":answer:" + token, doc, "PX", ANSWER_TTL_MS)
                if self.redis.execute("GET", key) == token.encode("ascii"):
                    self.redis.execute("DEL", key)
            except (RedisConnectionError, RedisError) as e:
                self.health.failed(e)
        self.local.post(call, result, error)
