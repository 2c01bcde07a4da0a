"""The provider router: which provider answers a model, in what order, and what happens when one fails.

A requested model resolves to candidates in ``resolver.py`` (aliases,
``provider/model``, listed names, ``type/model``, patterns; nothing -> 404
``model_not_found``). ``round_robin`` (the default; per alias
``routing.per_model``) rotates which candidate goes first, in proportion to
``weight``, and fails over through the rest in list order; ``priority``
always starts at the first. Providers whose circuit is open, whose last
health check failed, or that a 429 asked to wait are skipped -- except that
when no candidate is left and one is out only for a failed health check, one
live request goes to it as a trial (one per failed check); any request a
provider answers marks it healthy again at once.

Retryable failures move on to the next candidate at once; an upstream 4xx
the caller caused goes back as it is (except a 404 from a ``loose``
candidate, one that only matched a pattern or takes any model name: that
one just lacks the model, so the next candidate is tried). When every
candidate fails: 502, or 503 ``all_providers_unavailable`` when none could
be tried, or 504 when the last failure was a timeout; the message lists each
attempt. The caller's request id goes upstream as ``X-Request-ID``; the
upstream's own request id is recorded with each attempt.

Methods for the caller: ``complete(chat, user=, request_id=)`` ->
``Completion``; ``stream(...)`` -> ``RoutedStream``; ``resolve(model)``;
``route_key(model)``; ``models()``; ``model(id)``; ``providers_status()``;
``health_summary()``; ``pool_stats()``; ``breaker_states()``; ``start()``;
``close()``.
"""

import threading
import time

from .chat import DEFAULT_ALIAS
from .breaker import CircuitBreaker, State
from ..errors import BadGateway, ConfigError, GatewayTimeout, ServiceUnavailable
from ..providers.pool import ConnectionPool
from .pricing import Pricing
from .health import ProviderHealth
from .resolver import DEFAULT_ALIAS, Candidate, ModelResolver, Route  # noqa: F401 (re-exported)
from .telemetry import ProviderTelemetry
from ..providers import build_provider
from ..providers.base import CLIENT, RATE_LIMITED, TIMEOUT, UNSUPPORTED, ProviderError
from ..providers.settings import ProviderSpec, alias_entries, load_specs, routing_strategies
from .results import Completion, RoutedStream, UpstreamRejected

MAX_ROUTES = 1024  # round-robin score tables kept
MAX_COOLDOWN_SECONDS = 3600.0
DEFAULT_COOLDOWN_SECONDS = 1.0
FAILED_CHECK = "failed its last health check"
OFFLINE_ONLY_WARNING = ("no LLM provider is configured: every answer is the offline provider's placeholder "
                        "(set OPENAI_API_KEY, ANTHROPIC_API_KEY, AZURE_OPENAI_* or 'providers'; "
                        "'providers_required: true' makes this a startup error)")


def _usage(prompt, completion):
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class LLMRouter:
    """Routes chat requests to providers with failover, round robin, breakers and health checks."""

    def __init__(self, providers, aliases, *, strategy="round_robin", per_model=None, failure_threshold=5,
                 recovery_seconds=120.0, health_interval=300.0, pricing=None, clock=time.time, logger=None,
                 metrics=None, record_event=None, pool=None):
        self.providers = providers
        self.by_name = {p.name: p for p in providers}
        self.aliases = aliases
        self.clock = clock
        self.logger = logger
        self.pool = pool
        self.pricing = pricing or Pricing.load()
        self.health = ProviderHealth(providers, interval=health_interval, clock=clock, logger=logger)
        self.resolver = ModelResolver(providers, aliases, strategy=strategy, per_model=per_model,
                                      listed=self.health.listed, generation=self.health.generation)
        known = {c.model for cands in aliases.values() for c in cands}
        known |= {m for p in providers for m in p.spec.model_names} | {"offline"}
        known |= {self.resolver.default_model(p) for p in providers}
        self.telemetry = ProviderTelemetry(providers, known, pricing=self.pricing, metrics=metrics, logger=logger,
                                           record_event=record_event or (lambda *a, **k: None))
        self.breakers = {p.name: CircuitBreaker(p.name, failure_threshold=failure_threshold,
                                                recovery_seconds=recovery_seconds, clock=clock,
                                                on_change=self.telemetry.circuit_changed) for p in providers}
        self._lock = threading.Lock()  # round-robin weights and cooldowns
        self._weights = {}
        self._cooldown = {}
        metrics.add_collector(self._collect)

    @classmethod
    def from_config(cls, config, *, environ, clock, logger, metrics, record_event):
        """Build the router, its providers and its connection pool from the configuration."""
        specs = load_specs(config.get("providers", []), environ)
        routing = config.get("routing", {})
        if all(spec.type == "offline" for spec in specs):
            if config.get("providers_required"):
                raise ConfigError("config key 'providers_required' is true but no LLM provider is configured "
                                  "(set OPENAI_API_KEY, ANTHROPIC_API_KEY, AZURE_OPENAI_* or 'providers')")
            logger.warning(OFFLINE_ONLY_WARNING)
        pool = ConnectionPool(max_total=routing.get("max_total_connections", 200))
        if not specs:  # nothing configured: every endpoint still works, offline
            specs = [ProviderSpec("offline", "offline")]
        providers = [build_provider(spec, pool, clock) for spec in specs]
        by_name = {p.name: p for p in providers}
        aliases = {alias: [Candidate(by_name[name], model) for name, model in pairs]
                   for alias, pairs in alias_entries(config.get("models", {}), list(by_name)).items()}
        strategy, per_model = routing_strategies(routing)
        breaker = config.get("circuit_breaker", {})
        threshold, recovery = breaker.get("failure_threshold", 5), breaker.get("recovery_seconds", 120.0)
        interval = config.get("health_checks", {}).get("interval_seconds", 300.0)
        if threshold < 1:
            raise ConfigError("config key 'circuit_breaker.failure_threshold' must be at least 1")
        if recovery <= 0:
            raise ConfigError("config key 'circuit_breaker.recovery_seconds' must be greater than 0")
        if interval < 0:
            raise ConfigError("config key 'health_checks.interval_seconds' must be 0 (off) or more")
        if pool.max_total < 1:
            raise ConfigError("config key 'routing.max_total_connections' must be at least 1")
        return cls(providers, aliases, strategy=strategy, per_model=per_model,
                   failure_threshold=threshold, recovery_seconds=recovery, health_interval=interval,
                   pricing=Pricing.load(config.get("pricing")), clock=clock, logger=logger, metrics=metrics,
                   record_event=record_event, pool=pool)

    # -- resolution and ordering ----------------------------------------------------------------

    @property
    def offline_only(self):
        """True when the offline provider is the only one: every answer is a placeholder."""
        return self.resolver.offline_only

    def resolve(self, model):
        """The ``Route`` for a requested model; 404 ``model_not_found`` when nothing serves it."""
        return self.resolver.resolve(model)

    def route_key(self, model):
        """The resolved route as JSON-able data (``[[provider, model], ...]``): part of a cache key."""
        return [[c.provider.name, c.model] for c in self.resolve(model).candidates]

    def _unavailable(self, provider, now, *, health=True):
        """Why ``provider`` is skipped now, or None when it may be tried."""
        if health and not self.health.healthy(provider.name):
            return FAILED_CHECK
        until = self._cooldown.get(provider.name)
        if until is not None and now < until:
            return f"rate limited by the provider for another {until - now:.1f}s"
        if not self.breakers[provider.name].available():
            return "circuit open"
        return None

    def _order(self, route, now):
        candidates = route.candidates
        if route.strategy == "priority" or len(candidates) < 2:
            return candidates
        live = [c for c in candidates if c.provider.spec.weight > 0 and self._unavailable(c.provider, now) is None]
        if len(live) < 2:
            first = live[0] if live else candidates[0]
        else:
            first = self._pick(route.name, live)
        return [first] + [c for c in candidates if c is not first]

    def _trial(self, order, now):
        """The candidate to send one live trial request to, when every one is skipped and one only for its
        failed health check (it may have come up since: a server that starts after the gateway); or None."""
        if all(self.health.healthy(c.provider.name) for c in order) or any(
                self._unavailable(c.provider, now) is None for c in order):
            return None
        for cand in order:
            if (not self.health.healthy(cand.provider.name)
                    and self._unavailable(cand.provider, now, health=False) is None
                    and self.health.try_trial(cand.provider.name)):
                return cand
        return None

    def _pick(self, name, live):
        # Smooth weighted round robin (as nginx does): every pick adds each weight to its
        # candidate's score and takes the top scorer down by the total, so picks interleave.
        with self._lock:
            scores = self._weights.get(name)
            if scores is None:
                if len(self._weights) >= MAX_ROUTES:
                    self._weights.clear()
                scores = self._weights[name] = {}
            total = 0.0
            best = None
            for c in live:
                key = (c.provider.name, c.model)
                weight = c.provider.spec.weight
                total += weight
                scores[key] = scores.get(key, 0.0) + weight
                if best is None or scores[key] > scores[(best.provider.name, best.model)]:
                    best = c
            scores[(best.provider.name, best.model)] -= total
        return best

    # -- the failover loop ----------------------------------------------------------------------

    def _run(self, chat, call, user, request_id):
        """Try candidates in order; return ``(result, candidate, permit, attempts, failures, started)``."""
        route = self.resolve(chat.model)
        now = self.clock()
        order = self._order(route, now)
        trial = self._trial(order, now)
        failures = []
        attempts = 0
        previous = None
        for index, cand in enumerate(order):
            provider = cand.provider
            breaker = self.breakers[provider.name]
            reason = self._unavailable(provider, now, health=cand is not trial)
            permit = breaker.allow() if reason is None else None
            if permit is None:
                failures.append({"provider": provider.name, "model": cand.model, "reason": reason or "circuit open",
                                 "kind": "skipped"})
                if cand is trial:
                    self.health.release_trial(provider.name)
                continue
            if previous is not None:
                self.telemetry.failover(previous, provider.name, cand.model, user, request_id)
            attempts += 1
            started = time.perf_counter()
            try:
                result = call(provider, cand.model)
            except ProviderError as error:
                elapsed = time.perf_counter() - started
                self.settle(breaker, permit, error)
                if error.kind == UNSUPPORTED:
                    attempts -= 1
                    failures.append({"provider": provider.name, "model": cand.model, "reason": error.message,
                                     "kind": error.kind})
                    if cand is trial:
                        self.health.release_trial(provider.name)
                    continue
                if error.kind == CLIENT:
                    self.health.mark_up(provider.name)  # it answered: it is up
                self.telemetry.failed(provider, cand.model, error, elapsed, user, request_id)
                failures.append({"provider": provider.name, "model": cand.model,
                                 "reason": _reason(error), "kind": error.kind})
                if error.kind == RATE_LIMITED:
                    self._cool_down(provider.name, error.retry_after)
                if error.retryable or self._not_served(cand, error, index, order):
                    previous = provider.name
                    now = self.clock()
                    continue
                raise UpstreamRejected(provider.name, error, attempts) from None
            except BaseException:
                breaker.release(permit)
                if cand is trial:
                    self.health.release_trial(provider.name)
                raise
            self.health.mark_up(provider.name)
            return result, cand, permit, attempts, failures, started
        raise self._exhausted(route, failures, attempts)

    @staticmethod
    def _not_served(cand, error, index, order):
        # A provider that takes any model name (or matched only a pattern) answers 404 for one it
        # does not have; with more candidates left, that means "try the next", not "the caller erred".
        return error.status == 404 and cand.loose and index < len(order) - 1

    @staticmethod
    def settle(breaker, permit, error):
        """Report a failed attempt to the provider's breaker, by what kind of failure it was."""
        if error.provider_fault:
            breaker.record_failure(permit)
        elif error.kind == CLIENT:
            breaker.record_success(permit)  # the provider answered; the request was at fault
        else:
            breaker.release(permit)

    def _cool_down(self, name, retry_after):
        seconds = min(MAX_COOLDOWN_SECONDS, retry_after if retry_after is not None else DEFAULT_COOLDOWN_SECONDS)
        with self._lock:
            self._cooldown[name] = self.clock() + seconds

    def _exhausted(self, route, failures, attempts):
        listing = "; ".join(f"{f['provider']}: {f['reason']}" for f in failures) or "no candidates"
        headers = {"X-BMAD-Attempts": str(attempts)}
        if attempts == 0:
            headers["Retry-After"] = str(self._retry_after(route))
            return ServiceUnavailable(f"no provider could be tried for model '{route.name}': {listing}",
                                      type="all_providers_unavailable", code="all_providers_unavailable",
                                      headers=headers)
        tried = [f for f in failures if f["kind"] != "skipped" and f["kind"] != UNSUPPORTED]
        if tried and tried[-1]["kind"] == TIMEOUT:
            return GatewayTimeout(f"every provider failed for model '{route.name}', the last by timing out: "
                                  f"{listing}", type="upstream_timeout", code="upstream_timeout", headers=headers)
        return BadGateway(f"every provider failed for model '{route.name}': {listing}",
                          type="all_providers_failed", code="all_providers_failed", headers=headers)

    def _retry_after(self, route):
        now = self.clock()
        waits = []
        for c in route.candidates:
            until = self._cooldown.get(c.provider.name)
            if until is not None and until > now:
                waits.append(until - now)
            breaker = self.breakers[c.provider.name]
            if breaker.state is State.OPEN:
                waits.append(breaker.recovery_seconds)
            due = self.health.next_check(c.provider.name)
            if not self.health.healthy(c.provider.name) and due is not None and due > now:
                waits.append(due - now)
        return max(1, int(min(waits) + 0.999)) if waits else 1

    # -- the two ways to call -------------------------------------------------------------------

    def complete(self, chat, *, user=None, request_id=None):
        """Route one non-streamed chat request; returns a ``Completion`` or raises an ``HTTPError``."""
        began = time.perf_counter()
        reply, cand, permit, attempts, failures, started = self._run(
            chat, lambda provider, model: provider.complete(chat, model, request_id=request_id), user, request_id)
        done = time.perf_counter()
        self.breakers[cand.provider.name].record_success(permit)
        served = reply.body.get("model") if isinstance(reply.body.get("model"), str) else None
        cost = self.telemetry.succeeded(cand.provider, cand.model, done - started, reply.prompt_tokens,
                                        reply.completion_tokens, user, served, request_id=request_id,
                                        upstream_id=reply.upstream_id)
        return Completion(reply.body, cand.provider.name, cand.model, _usage(reply.prompt_tokens,
                          reply.completion_tokens), cost, round((done - began) * 1000.0, 3), attempts, failures)

    def stream(self, chat, *, user=None, request_id=None):
        """Route one streamed chat request up to its first event; returns a ``RoutedStream``."""
        began = time.perf_counter()

        def open_stream(provider, model):
            """Open the upstream stream and read up to its first event (the last point to fail over)."""
            upstream = provider.stream(chat, model, request_id=request_id)
            try:
                upstream.prime()
            except BaseException:
                upstream.close()
                raise
            return upstream

        upstream, cand, permit, attempts, failures, started = self._run(chat, open_stream, user, request_id)
        return RoutedStream(self, upstream, cand, permit, attempts, failures, began, started, user, request_id)

    # -- status ---------------------------------------------------------------------------------

    def available(self, name):
        """True when provider ``name`` would be tried now."""
        return self._unavailable(self.by_name[name], self.clock()) is None

    def models(self):
        """``[(id, owner)]``: every alias (owner ``bmad-api``), then every model a provider lists
        (configured, or from its last health check), each once."""
        return self.resolver.models()

    def model(self, model_id):
        """``(id, owner)`` of a model ``models()`` lists (an alias or a provider's model); None otherwise."""
        return next(((name, owner) for name, owner in self.resolver.models() if name == model_id), None)

    def providers_status(self):
        """One entry per provider for ``GET /bmad/providers``."""
        out = []
        for p in self.providers:
            health = self.health.snapshot(p.name)
            last = health["last_check"]
            entry = {"name": p.name, "type": p.type, "host": p.spec.hostport, "models": self.resolver.models_of(p),
                     "healthy": health["healthy"], "circuit_state": self.breakers[p.name].state.value,
                     "last_check": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last)) if last else None,
                     "last_error": health["last_error"]}
            entry.update(self.telemetry.stats[p.name].snapshot())
            out.append(entry)
        return out

    def health_summary(self):
        """``checks.providers`` of ``/bmad/health``: degraded when no provider is available; ``mode`` says
        ``offline-only`` when no real provider is configured (answers are placeholders), else ``live``."""
        now = self.clock()
        available = [p.name for p in self.providers if self._unavailable(p, now) is None]
        summary = {"status": "ok" if available else "degraded", "mode": "offline-only" if self.offline_only else "live",
                   "available": len(available), "total": len(self.providers),
                   "providers": {p.name: p.name in available for p in self.providers}}
        if self.offline_only:
            summary["message"] = OFFLINE_ONLY_WARNING
        return summary

    def breaker_states(self):
        """Provider name -> ``closed`` | ``half_open`` | ``open``."""
        return {name: b.state.value for name, b in self.breakers.items()}

    def pool_stats(self):
        """Upstream connection figures: open, idle, in use, created, reused (totals and per provider)."""
        return self.pool.stats() if self.pool is not None else {}

    def max_timeout(self):
        """The longest a single provider attempt may take (seconds)."""
        return max((p.spec.timeout for p in self.providers if p.type != "offline"), default=60.0)

    def _collect(self):
        now = self.clock()
        self.telemetry.refresh_gauges({p.name: self._unavailable(p, now) is None for p in self.providers},
                                      {n: b.state.level for n, b in self.breakers.items()}, self.pool_stats()
                                      or {"providers": {}})

    def start(self):
        """Start the background health checks."""
        self.health.start()

    def close(self):
        """Stop the health checks and close idle upstream connections."""
        self.health.stop()
        if self.pool is not None:
            self.pool.close()


def _reason(error):
    status = f"HTTP {error.status}: " if error.status else ""
    return f"{error.kind} ({status}{error.message[:200]})"
