"""Provider-class rate limiting as a pipeline plugin.

Every call from an entry point that is rate limited takes a token of its
client's ``provider`` bucket (``rate_limits.provider``) and gets the
``RateLimit-*`` headers; an empty bucket refuses it with 429 and
``Retry-After``. A workflow step (``call.admitted``: its run was admitted by
the ``workflow`` limit) is charged to the user who started the run, so
their interactive calls share the budget, but it is never refused.
"""

from ..http.ratelimit import refusal

PROVIDER_CLASS = "provider"


class RateLimitPlugin:
    """Takes a token of the caller's provider bucket, or refuses the call."""

    name = "rate_limit"

    def __init__(self, limiter, on_limited):
        self.limiter = limiter
        self.on_limited = on_limited

    def pre(self, call):
        """Charge the call; 429 when its client's bucket is empty."""
        client = call.rate_client
        if client is None or not self.limiter.enabled:
            return None
        decision = self.limiter.acquire(client, PROVIDER_CLASS)
        if call.admitted:
            return None
        call.headers.update(decision.headers())
        if decision.allowed:
            return None
        self.on_limited(client, PROVIDER_CLASS, call.origin)
        raise refusal(PROVIDER_CLASS, decision)

    def post(self, call, result, error):
        """Nothing to settle: a token is spent whatever the outcome."""
