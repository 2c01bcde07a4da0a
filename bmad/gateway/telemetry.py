"""What the router reports about each provider attempt: metrics, per-provider stats, events, logs.

Metric label values come only from the configuration: provider names, and
model names that a provider lists, an alias targets or a provider uses by
default; any other model name is counted as ``other``, so callers cannot
create series at will. Events and logs carry ids, numbers and error kinds,
never prompt or completion text and never a key.
"""

from ..providers.stats import ProviderStats

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)


class ProviderTelemetry:
    """Records attempts, failovers and circuit changes for every provider."""

    def __init__(self, providers, known_models, *, pricing, metrics, logger, record_event):
        self.pricing = pricing
        self.logger = logger
        self.record_event = record_event
        self.known_models = frozenset(known_models)
        self.stats = {p.name: ProviderStats() for p in providers}
        m = metrics
        self.requests = m.counter("bmad_provider_requests_total", "Requests sent to LLM providers, by outcome.",
                                  ("provider", "model", "outcome"))
        self.duration = m.histogram("bmad_provider_request_duration_seconds",
                                    "Time an LLM provider took to answer (a stream: until its end).", ("provider",),
                                    buckets=LATENCY_BUCKETS)
        self.failovers = m.counter("bmad_provider_failovers_total", "Requests moved on from a provider that failed.",
                                   ("from_provider",))
        self.tokens = m.counter("bmad_llm_tokens_total", "Tokens used, by kind (prompt or completion).",
                                ("provider", "model", "kind"))
        self.cost = m.counter("bmad_llm_cost_usd_total", "Cost of LLM usage in USD, from the pricing table.",
                              ("provider", "model"))
        self.up = m.gauge("bmad_provider_up", "1 when a provider is available (healthy, circuit not open).",
                          ("provider",))
        self.breaker_state = m.gauge("bmad_circuit_breaker_state",
                                     "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
                                     ("provider",))
        self.pool_connections = m.gauge("bmad_pool_connections", "Upstream connections, by state.",
                                        ("provider", "state"))
        for p in providers:
            self.failovers.inc(0, from_provider=p.name)
            self.breaker_state.set(0, provider=p.name)
            self.up.set(1, provider=p.name)

    def model_label(self, model):
        """``model`` when the configuration names it, else ``other``."""
        return model if model in self.known_models else "other"

    def succeeded(self, provider, model, latency_s, prompt_tokens, completion_tokens, user, served_model=None,
                  status="success", request_id=None, upstream_id=None):
        """Count one successful attempt; returns its cost in USD.

        ``upstream_id`` is the provider's own id of the request (its ``x-request-id`` or ``request-id``).
        """
        cost, latency_ms = self._attempt(provider, model, "success", True, status, latency_s, prompt_tokens,
                                         completion_tokens, user, served_model, request_id, upstream_id)
        if self.logger.enabled("debug"):
            self.logger.debug("provider attempt succeeded", provider=provider.name, model=model[:200],
                              status=status, request_id=request_id, upstream_request_id=upstream_id,
                              latency_ms=latency_ms)
        return cost

    def failed(self, provider, model, error, latency_s, user, request_id=None, prompt_tokens=0, completion_tokens=0,
               upstream_id=None):
        """Count one failed attempt (``error`` is a ``ProviderError``); returns the cost of any tokens used.

        A stream that broke after the provider reported usage still costs its tokens.
        """
        name = provider.name
        upstream_id = upstream_id or error.upstream_id
        cost, latency_ms = self._attempt(provider, model, error.kind, False, "error", latency_s, prompt_tokens,
                                         completion_tokens, user, None, request_id, upstream_id)
        self.record_event("provider_failure", provider=name, error_type=error.kind, status=error.status,
                          user_id=user, request_id=request_id, upstream_request_id=upstream_id)
        self.logger.warning("provider attempt failed", provider=name, model=model[:200], error_type=error.kind,
                            status=error.status, error=error.message[:300], request_id=request_id,
                            upstream_request_id=upstream_id, latency_ms=latency_ms)
        return cost

    def _attempt(self, provider, model, outcome, ok, status, latency_s, prompt_tokens, completion_tokens, user,
                 served_model=None, request_id=None, upstream_id=None):
        """Metrics, per-provider stats and the ``provider_request`` event of one attempt; ``(cost, latency_ms)``."""
        cost = 0.0
        if provider.type != "offline" and (prompt_tokens or completion_tokens):
            cost = self.pricing.cost(model, prompt_tokens, completion_tokens, *((served_model,) if served_model else ()))
        label = self.model_label(model)
        name = provider.name
        self.requests.inc(provider=name, model=label, outcome=outcome)
        self.duration.observe(latency_s, provider=name)
        if prompt_tokens:
            self.tokens.inc(prompt_tokens, provider=name, model=label, kind="prompt")
        if completion_tokens:
            self.tokens.inc(completion_tokens, provider=name, model=label, kind="completion")
        if cost:
            self.cost.inc(cost, provider=name, model=label)
        latency_ms = round(latency_s * 1000.0, 3)
        self.stats[name].record(ok, latency_ms, prompt_tokens, completion_tokens, cost)
        self.record_event("provider_request", provider=name, model=model[:200], status=status, latency_ms=latency_ms,
                          prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost,
                          user_id=user, request_id=request_id, upstream_request_id=upstream_id)
        return cost, latency_ms

    def failover(self, from_provider, to_provider, model, user, request_id=None):
        """A request moved on from one provider to the next."""
        self.failovers.inc(from_provider=from_provider)
        self.record_event("provider_failover", from_provider=from_provider, to_provider=to_provider,
                          model=model[:200], user_id=user)
        self.logger.info("provider failover", from_provider=from_provider, to_provider=to_provider,
                         request_id=request_id)

    def circuit_changed(self, name, old, new):
        """A provider's circuit breaker changed state."""
        self.breaker_state.set(new.level, provider=name)
        log = self.logger.warning if new.value == "open" else self.logger.info
        log("circuit breaker state changed", provider=name, **{"from": old.value, "to": new.value})
        self.record_event("circuit_state_changed", provider=name, **{"from": old.value, "to": new.value})

    def refresh_gauges(self, availability, breaker_levels, pool_stats):
        """Copy availability, breaker states and pool figures into their gauges (before a scrape)."""
        for name, available in availability.items():
            self.up.set(1 if available else 0, provider=name)
        for name, level in breaker_levels.items():
            self.breaker_state.set(level, provider=name)
        for name, host in pool_stats["providers"].items():
            for state in ("open", "idle", "in_use"):
                self.pool_connections.set(host[state], provider=name, state=state)
