"""Token-bucket rate limits per (client, class), and the guard that applies them.

A bucket holds up to ``burst`` tokens and refills at ``per_minute / 60``
tokens a second; a request takes one token or is refused with the time until
the next token. A bucket that has refilled completely is the same as no
bucket, so idle buckets are dropped; the table also has a hard cap
(``max_clients``) with least-recently-used eviction, so many distinct clients
cannot grow memory without bound.

Methods for the caller: ``RateLimiter.from_config(config, clock)``,
``acquire(client, klass)`` -> ``Decision``, ``stats()``; ``RateLimitGuard``
for ``app.guards``.
"""

import ipaddress
import math
import threading
import time
from collections import OrderedDict

from ..errors import ConfigError, TooManyRequests

# "auth" is spent only by failed keys (``AuthThrottle``), per client address.
CLASSES = ("api", "provider", "workflow", "auth")
# Limited per LLM call in the gateway pipeline, not per request here.
PIPELINE_CLASS = "provider"
WINDOW_SECONDS = 60
POLICY_KEYS = ("per_minute", "burst")
# Idle buckets are swept from the least-recently-used end every this many acquisitions.
SWEEP_EVERY = 64
MAX_FORWARDED_CHARS = 64


class Policy:
    """``per_minute`` tokens a minute, at most ``burst`` at once."""

    __slots__ = ("per_minute", "burst", "rate", "header")

    def __init__(self, per_minute, burst):
        self.per_minute = per_minute
        self.burst = burst
        self.rate = per_minute / WINDOW_SECONDS
        self.header = f"{per_minute};w={WINDOW_SECONDS}"

    def __eq__(self, other):
        return isinstance(other, Policy) and (self.per_minute, self.burst) == (other.per_minute, other.burst)

    def __repr__(self):
        return f"Policy(per_minute={self.per_minute}, burst={self.burst})"


class Decision:
    """The outcome of one ``acquire``: allowed or not, and the numbers for the headers."""

    __slots__ = ("allowed", "policy", "remaining", "reset_seconds", "retry_after")

    def __init__(self, allowed, policy, remaining, reset_seconds, retry_after):
        self.allowed = allowed
        self.policy = policy
        self.remaining = remaining
        self.reset_seconds = reset_seconds
        self.retry_after = retry_after

    @classmethod
    def of(cls, allowed, policy, tokens, cost):
        """The decision for a bucket left holding ``tokens`` after asking for ``cost``."""
        missing = policy.burst - tokens
        reset = math.ceil(missing / policy.rate) if missing > 1e-9 else 0
        retry_after = 0 if allowed else max(1, math.ceil((cost - tokens) / policy.rate))
        return cls(allowed, policy, int(tokens), reset, retry_after)

    def headers(self):
        """The ``RateLimit-*`` response headers (IETF httpapi-ratelimit-headers draft)."""
        return {"RateLimit-Limit": str(self.policy.per_minute), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset_seconds), "RateLimit-Policy": self.policy.header}


def _policy_from(section, where, base=None):
    if not isinstance(section, dict):
        raise ConfigError(f"config key '{where}' must be an object with per_minute and burst")
    unknown = set(section) - set(POLICY_KEYS)
    if unknown:
        raise ConfigError(f"unknown config key '{where}.{sorted(unknown)[0]}'")
    values = {}
    for key in POLICY_KEYS:
        value = section.get(key, getattr(base, key, None))
        if value is None:
            raise ConfigError(f"config key '{where}.{key}' is required")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"config key '{where}.{key}' must be an integer of at least 1, got {value!r}")
        values[key] = value
    return Policy(values["per_minute"], values["burst"])


def policies_from_config(section):
    """``(policies, overrides)`` from the ``rate_limits`` config section; ConfigError names a bad key."""
    policies = {klass: _policy_from(section[klass], f"rate_limits.{klass}") for klass in CLASSES}
    overrides = {}
    raw = section.get("overrides") or {}
    for client, per_class in raw.items():
        where = f"rate_limits.overrides.{client}"
        if not isinstance(per_class, dict) or not per_class:
            raise ConfigError(f"config key '{where}' must be an object of class -> {{per_minute, burst}}")
        for klass, policy in per_class.items():
            if klass not in CLASSES:
                raise ConfigError(f"unknown config key '{where}.{klass}'; classes are {', '.join(CLASSES)}")
            overrides[(client, klass)] = _policy_from(policy, f"{where}.{klass}", policies[klass])
    return policies, overrides


class RateLimiter:
    """Token buckets per (client, class); thread-safe, pure computation under one lock."""

    def __init__(self, policies, overrides=None, *, clock=time.monotonic, max_clients=50_000, enabled=True):
        if max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        self.policies = dict(policies)
        self.overrides = dict(overrides or {})
        self.clock = clock
        self.max_clients = max_clients
        self.enabled = enabled
        # (client, class) -> [tokens, last_refill]; ordered least recently used first
        self._buckets = OrderedDict()
        self._lock = threading.Lock()
        self._since_sweep = 0
        self._counts = {klass: [0, 0] for klass in self.policies}

    @classmethod
    def from_config(cls, config, clock=time.monotonic):
        """Build from the ``rate_limits`` config section."""
        section = config["rate_limits"]
        if section["max_clients"] < 1:
            raise ConfigError("config key 'rate_limits.max_clients' must be at least 1")
        policies, overrides = policies_from_config(section)
        return cls(policies, overrides, clock=clock, max_clients=section["max_clients"],
                   enabled=section["enabled"])

    def __len__(self):
        return len(self._buckets)

    def policy_for(self, client, klass):
        """The policy that applies to ``client`` in ``klass`` (its override, else the class's)."""
        return self.overrides.get((client, klass)) or self.policies[klass]

    def acquire(self, client, klass, cost=1):
        """Take ``cost`` tokens from the (client, class) bucket; returns a ``Decision``."""
        policy = self.policy_for(client, klass)
        key = (client, klass)
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                tokens = float(policy.burst)
                self._make_room()
                bucket = self._buckets[key] = [tokens, now]
            else:
                # a clock that steps backwards (wall time) must not mint or burn tokens
                elapsed = max(0.0, now - bucket[1])
                tokens = min(float(policy.burst), bucket[0] + elapsed * policy.rate)
                self._buckets.move_to_end(key)
            allowed = tokens >= cost
            if allowed:
                tokens -= cost
            bucket[0] = tokens
            bucket[1] = now
            self._counts[klass][0 if allowed else 1] += 1
            self._since_sweep += 1
            if self._since_sweep >= SWEEP_EVERY:
                self._sweep(now)
        return Decision.of(allowed, policy, tokens, cost)

    def retry_after(self, client, klass):
        """Seconds until ``client`` has a token in ``klass`` again (0: it has one now); takes nothing."""
        policy = self.policy_for(client, klass)
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get((client, klass))
            if bucket is None:
                return 0
            tokens = min(float(policy.burst), bucket[0] + max(0.0, now - bucket[1]) * policy.rate)
        return 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) / policy.rate))

    def _make_room(self):
        while len(self._buckets) >= self.max_clients:
            # Dropping a partly drained bucket forgives its client some tokens;
            # the least recently used one is the least likely to be mid-burst.
            self._buckets.popitem(last=False)

    def _sweep(self, now):
        """Drop buckets that have refilled completely, oldest first, stopping at the first that has not."""
        self._since_sweep = 0
        buckets = self._buckets
        while buckets:
            (client, klass), (tokens, last) = next(iter(buckets.items()))
            policy = self.policy_for(client, klass)
            if tokens + (now - last) * policy.rate < policy.burst:
                break
            buckets.popitem(last=False)

    def stats(self):
        """``{class: {"allowed", "limited"}}`` since start."""
        with self._lock:
            return {klass: {"allowed": a, "limited": d} for klass, (a, d) in self._counts.items()}


def client_of(req, *, by_user, trust_proxy):
    """The rate-limit client id: the user when keys authenticate callers, else the client IP.

    With ``trust_proxy`` the first ``X-Forwarded-For`` hop (the original
    client, as the proxy saw it) is used when it is a valid address.
    """
    if by_user and req.principal is not None:
        return req.user
    if trust_proxy:
        forwarded = req.headers.get("x-forwarded-for")
        if forwarded:
            first = forwarded.split(",", 1)[0].strip()[:MAX_FORWARDED_CHARS]
            try:
                return str(ipaddress.ip_address(first))
            except ValueError:
                pass
    return req.client_ip


class RateLimitGuard:
    """Limits each request by its route's rate class (``api``, ``workflow``), and names its client.

    Routes of class ``provider`` are limited per LLM call by the pipeline
    instead (``bmad/gateway/limits.py``), so workflow steps share those
    limits; ``client(req)`` is the id the pipeline charges.
    ``on_limited(client, klass, route)`` is called for each refused request
    (metrics, analytics) before the 429 is raised.
    """

    def __init__(self, limiter, *, by_user, trust_proxy, on_limited=None):
        self.limiter = limiter
        self.by_user = by_user
        self.trust_proxy = trust_proxy
        self.on_limited = on_limited

    def client(self, req):
        """The rate-limit client id of ``req``."""
        return client_of(req, by_user=self.by_user, trust_proxy=self.trust_proxy)

    def __call__(self, req):
        klass = req.route.rate_class if req.route else None
        if klass is None or klass == PIPELINE_CLASS or not self.limiter.enabled:
            return
        client = self.client(req)
        decision = self.limiter.acquire(client, klass)
        req.response_headers.update(decision.headers())
        if decision.allowed:
            return
        if self.on_limited is not None:
            self.on_limited(client, klass, req.route.template)
        raise refusal(klass, decision)


def refusal(klass, decision):
    """The 429 for a request of ``klass`` that ``decision`` refused: it names the setting to raise."""
    policy = decision.policy
    return TooManyRequests(
        f"rate limit exceeded for {klass} requests ({policy.per_minute} per minute, burst {policy.burst}); "
        f"retry in {decision.retry_after} s; the limit is the setting rate_limits.{klass} (raise its "
        f"per_minute and burst, or one caller's in rate_limits.overrides)", type="rate_limited",
        headers={"Retry-After": str(decision.retry_after)})


class AuthThrottle:
    """Limits failed API keys per client address: a brute force gets 429 instead of more tries.

    ``failed(req)`` spends a token of the client's ``auth`` bucket for each
    401; once the bucket is empty, ``check(req)`` refuses every request of
    that client that needs a key -- before the key is compared, so a correct
    guess is not told apart -- until a token has refilled. Keyed by address,
    not user: a failed key names no user. ``on_limited(client, klass, route)``
    is called for each refusal.
    """

    def __init__(self, limiter, *, trust_proxy, on_limited=None, on_failed=None):
        self.limiter = limiter
        self.trust_proxy = trust_proxy
        self.on_limited = on_limited
        self.on_failed = on_failed

    def check(self, req):
        """Raise 429 when the caller has used up its failed-key budget."""
        if not self.limiter.enabled:
            return
        client = client_of(req, by_user=False, trust_proxy=self.trust_proxy)
        wait = self.limiter.retry_after(client, "auth")
        if wait <= 0:
            return
        if self.on_limited is not None:
            self.on_limited(client, "auth", req.route.template if req.route else "other")
        policy = self.limiter.policy_for(client, "auth")
        raise TooManyRequests(f"too many failed API keys from this client ({policy.per_minute} per minute, burst "
                              f"{policy.burst}); retry in {wait} s", type="rate_limited",
                              headers={"Retry-After": str(wait)})

    def failed(self, req, guessed=True):
        """Count one refused key; a wrong one (``guessed``) also spends a token of the caller's budget."""
        if self.on_failed is not None:
            self.on_failed()
        if guessed and self.limiter.enabled:
            self.limiter.acquire(client_of(req, by_user=False, trust_proxy=self.trust_proxy), "auth")
