"""Token buckets shared by every process through Redis: one atomic server-side script per check.

``SharedRateLimiter`` has the interface of ``bmad.http.ratelimit.RateLimiter``
(``acquire``, ``retry_after``, ``policy_for``, ``stats``), so the HTTP guard,
the failed-key throttle and the pipeline's provider limit use it unchanged.
Each bucket is a Redis hash ``{tokens, ts}`` refilled and spent inside one
Lua script, so two processes can never both take the last token; it expires
once it would have refilled completely. Time comes from the injected clock
of the process that asks (processes of one deployment share a clock closely
enough for a limit measured in tokens per minute).

When Redis cannot be reached, ``state.on_redis_error`` decides: ``closed``
(the default) refuses with 503 naming the reason; ``open_local`` falls back
to this process's own buckets until Redis answers again.
"""

import math
import time

from ..errors import ServiceUnavailable
from ..http.ratelimit import Decision
from .redis import RedisConnectionError, RedisError

BUCKET_SCRIPT = """
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local tokens = burst
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
if state[1] then
  local elapsed = math.max(0, now - tonumber(state[2]))
  tokens = math.min(burst, tonumber(state[1]) + elapsed * rate)
end
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""
KEY_PREFIX = "bmad:rl:"


class SharedRateLimiter:
    """Rate limits held in Redis (see the module docstring)."""

    def __init__(self, redis, local, *, health, on_error="closed", clock=time.time):
        self.redis = redis
        self.local = local  # this process's limiter: the policies, and the fallback of ``open_local``
        self.policies = local.policies
        self.enabled = local.enabled
        self.health = health
        self.on_error = on_error
        self.clock = clock
        self._bucket = redis.script(BUCKET_SCRIPT)
        self._counts = {klass: [0, 0] for klass in self.policies}

    def __len__(self):
        return len(self.local)

    def policy_for(self, client, klass):
        """The policy that applies to ``client`` in ``klass``."""
        return self.local.policy_for(client, klass)

    def acquire(self, client, klass, cost=1):
        """Take ``cost`` tokens from the shared (client, class) bucket; a ``Decision``."""
        policy = self.policy_for(client, klass)
        try:
            allowed, tokens = self._bucket([KEY_PREFIX + klass + ":" + client],
                                           [policy.burst, policy.rate, self.clock(), cost])
        except (RedisConnectionError, RedisError) as e:
            self.health.failed(e)
            if self.on_error == "open_local":
                return self.local.acquire(client, klass, cost)
            raise ServiceUnavailable("rate limits are held in Redis, which cannot be reached now; they fail closed "
                                     "(state.on_redis_error)", type="state_unavailable",
                                     headers={"Retry-After": "1"}) from None
        self.health.ok()
        tokens = float(tokens)
        allowed = allowed == 1
        self._counts.setdefault(klass, [0, 0])[0 if allowed else 1] += 1
        return Decision.of(allowed, policy, tokens, cost)

    def retry_after(self, client, klass):
        """Seconds until ``client`` has a token again; asks without taking one (0 when Redis is out)."""
        policy = self.policy_for(client, klass)
        try:
            state = self.redis.execute("HMGET", KEY_PREFIX + klass + ":" + client, "tokens", "ts")
        except (RedisConnectionError, RedisError):
            return 0
        if state[0] is None:
            return 0
        tokens = min(float(policy.burst), float(state[0]) + max(0.0, self.clock() - float(state[1])) * policy.rate)
        return 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) / policy.rate))

    def stats(self):
        """``{class: {"allowed", "limited"}}`` decided by this process since start."""
        return {klass: {"allowed": a, "limited": d} for klass, (a, d) in self._counts.items()}
