"""Which providers may answer a requested model name, and under which model name each is asked.

A name resolves, first match wins:

1. a ``models`` alias (``bmad-default``, unless configured, is every provider
   in order, each with its first listed model or its type's default);
2. ``provider-name/model``: that provider, asked for ``model``;
3. every provider that lists the whole name outright (its ``models`` config,
   or the list its last health check returned when the config gives none);
4. ``provider-type/model`` (``openai/gpt-4o``, ``anthropic/claude-sonnet-4-5``):
   the providers of that type that serve ``model`` (else every one of that
   type), asked for ``model`` with the prefix stripped;
5. the providers one of whose ``models`` patterns (``gpt-*``) matches the
   name; else every provider that takes any name (no ``models``, and no
   list from a health check yet).

Nothing -> 404 ``model_not_found`` naming the model. The offline provider
serves any name only when it is the only provider; next to real ones it
serves ``offline`` and what it lists. A candidate that only matched a pattern
or takes any name is ``loose``: a 404 from it means "not here", so the router
tries the next one instead of passing the 404 back.
"""

import threading

from ..errors import NotFound
from ..providers.settings import TYPES

DEFAULT_ALIAS = "bmad-default"
MAX_ROUTES = 1024


class Candidate:
    """One way to serve a route: a provider, the model name it is asked for, and how sure that is."""

    __slots__ = ("provider", "model", "loose")

    def __init__(self, provider, model, loose=False):
        self.provider = provider
        self.model = model
        self.loose = loose  # matched by a pattern or by taking any name, not by a listed name


class Route:
    """A requested model, resolved: its candidates in list order and how to order them."""

    __slots__ = ("name", "candidates", "strategy")

    def __init__(self, name, candidates, strategy):
        self.name = name
        self.candidates = candidates
        self.strategy = strategy


class ModelResolver:
    """Resolves model names to routes and lists the models served; routes are cached until a models list changes.

    ``listed(name)`` gives the models a provider's last health check returned
    (None when unknown); ``generation()`` changes whenever such a list does.
    """

    def __init__(self, providers, aliases, *, strategy="round_robin", per_model=None, listed=None, generation=None):
        self.providers = providers
        self.by_name = {p.name: p for p in providers}
        self.aliases = aliases
        self.strategy = strategy
        self.per_model = per_model or {}
        self.listed = listed or (lambda name: None)
        self.generation = generation or (lambda: 0)
        self.offline_only = all(p.type == "offline" for p in providers)
        self._lock = threading.Lock()  # the route cache
        self._routes = {}
        self._seen_generation = self.generation()

    def serves(self, provider, model):
        """How ``provider`` serves ``model``: ``exact`` (it lists it), ``pattern`` (a pattern matches),
        ``any`` (it takes any name), or None."""
        spec = provider.spec
        if spec.models is not None:
            how = spec.listed(model)
            if how == "pattern":
                listed = self.listed(provider.name)
                return "exact" if listed and model in listed else "pattern"
            return how
        if provider.type == "offline":
            return "exact" if model == "offline" or self.offline_only else None
        listed = self.listed(provider.name)
        if not listed:
            return "any"
        # Ollama lists "llama3.1:latest" and serves it as "llama3.1" too.
        return "exact" if model in listed or model + ":latest" in listed else None

    def default_model(self, provider):
        """The model ``bmad-default`` asks ``provider`` for: its first listed one, else its type's default."""
        first = provider.spec.first_model
        if first is None and provider.spec.models is None and provider.type != "offline":
            first = next(iter(self.listed(provider.name) or ()), None)
        return first or provider.default_model

    def resolve(self, model):
        """The ``Route`` for a requested model; 404 ``model_not_found`` when nothing serves it."""
        generation = self.generation()
        if generation != self._seen_generation:
            with self._lock:
                self._routes.clear()
                self._seen_generation = generation
        route = self._routes.get(model)
        if route is not None:
            return route
        candidates = self._candidates(model)
        if not candidates:
            raise NotFound(f"model '{model[:200]}' is not served here: it is no alias and no provider lists it; "
                           "GET /v1/models lists what is", type="invalid_request_error", code="model_not_found",
                           param="model")
        route = Route(model, candidates, self.per_model.get(model, self.strategy))
        with self._lock:
            if len(self._routes) >= MAX_ROUTES:
                self._routes.clear()
            self._routes[model] = route
        return route

    def _candidates(self, model):
        if model in self.aliases:
            return self.aliases[model]
        if model == DEFAULT_ALIAS:
            return [Candidate(p, self.default_model(p)) for p in self.providers]
        prefix, _, rest = model.partition("/")
        if rest and prefix in self.by_name:
            return [Candidate(self.by_name[prefix], rest)]
        serving = self._serving(self.providers, model)
        if serving and not serving[0].loose:
            return serving
        if rest and prefix in TYPES:
            of_type = [p for p in self.providers if p.type == prefix]
            if of_type:
                return self._serving(of_type, rest) or [Candidate(p, rest, True) for p in of_type]
        return serving

    def _serving(self, providers, model):
        # The most specific way wins: listed names, else patterns, else providers taking any name.
        found = [(p, self.serves(p, model)) for p in providers]
        for tier in ("exact", "pattern", "any"):
            candidates = [Candidate(p, model, tier != "exact") for p, how in found if how == tier]
            if candidates:
                return candidates
        return []

    def models(self):
        """``[(id, owner)]``: every alias (owner ``bmad-api``), then every model a provider lists
        (configured names, and what its last health check returned that it serves), each once."""
        seen = {name: "bmad-api" for name in self.aliases}
        seen.setdefault(DEFAULT_ALIAS, "bmad-api")
        for p in self.providers:
            names = [m for m in p.spec.models or () if p.spec.listed(m) == "exact"]
            names += [m for m in self.listed(p.name) or () if self.serves(p, m) == "exact"]
            for name in names:
                seen.setdefault(name, p.name)
        return list(seen.items())

    def models_of(self, provider):
        """What ``provider`` is shown to serve on ``/bmad/providers``: its config, else its last list."""
        if provider.spec.models is not None:
            return list(provider.spec.models)
        if provider.type == "offline":
            return ["offline"]
        return list(self.listed(provider.name) or ())
