"""Provider and routing settings: ``providers`` and the environment shortcuts, ``models`` aliases, ``routing``.

Each entry of ``providers`` becomes a ``ProviderSpec``; a mistake raises
``ConfigError`` naming the key (``providers[1].base_url``). The environment
shortcuts add one provider each, named by type, unless the config already
has a provider of that name: ``OPENAI_API_KEY`` (+ ``OPENAI_BASE_URL``),
``ANTHROPIC_API_KEY`` (+ ``ANTHROPIC_BASE_URL``), ``AZURE_OPENAI_API_KEY`` +
``AZURE_OPENAI_ENDPOINT`` + ``AZURE_OPENAI_DEPLOYMENT`` (+
``AZURE_OPENAI_API_VERSION``). A shortcut provider serves its type's model
names (``SHORTCUT_MODELS``) rather than any name, so two shortcuts side by
side never send a model to the provider that cannot have it.

``models`` entries are names or ``fnmatch`` patterns (``gpt-*``,
``o[0-9]*``). A ``base_url`` may be given with or without its API version
segment: an OpenAI-type URL with no path gets ``/v1`` (where every
OpenAI-compatible server serves), an Anthropic one loses a trailing ``/v1``
(the client adds it to every path).
"""

import re
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from ..errors import ConfigError

TYPES = ("openai", "anthropic", "azure", "offline")
DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
DEFAULT_AZURE_API_VERSION = "2024-10-21"
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEYS = {"name", "type", "base_url", "api_key", "api_key_env", "models", "weight", "timeout_seconds",
        "connect_timeout_seconds", "max_connections", "deployment", "api_version", "max_response_bytes"}
OFFLINE_KEYS = {"name", "type", "models", "weight"}
# What an environment-shortcut provider serves. OpenAI's families by prefix (an OPENAI_BASE_URL pointing at
# another server serves whatever that server lists instead); Azure also takes its deployment's name.
OPENAI_MODELS = ("gpt-*", "o[0-9]*", "chatgpt-*", "text-embedding-*", "omni-moderation-*", "text-moderation-*",
                 "codex-*", "computer-use-*", "dall-e-*", "tts-*", "whisper-*", "davinci-*", "babbage-*")
SHORTCUT_MODELS = {"openai": OPENAI_MODELS, "anthropic": ("claude-*",), "azure": OPENAI_MODELS}
PATTERN_CHARS = frozenset("*?[")


def is_pattern(model):
    """True when a ``models`` entry is an ``fnmatch`` pattern rather than one name."""
    return not PATTERN_CHARS.isdisjoint(model)


def api_root(ptype, path):
    """The path every request of a ``ptype`` provider goes under, from its ``base_url`` path."""
    path = path.rstrip("/")
    if ptype == "openai" and not path:
        return "/v1"  # what vLLM, Ollama, LM Studio, llama.cpp and OpenAI itself serve under
    if ptype == "anthropic" and path.endswith("/v1"):
        return path[:-3]  # the Messages client's paths start with /v1 already
    return path


class ProviderSpec:
    """One provider's validated settings. ``api_key`` never appears in ``repr``."""

    __slots__ = ("name", "type", "base_url", "scheme", "host", "port", "base_path", "api_key", "models",
                 "weight", "timeout", "connect_timeout", "max_connections", "deployment", "api_version",
                 "max_response_bytes", "model_names", "model_patterns")

    def __init__(self, name, type, *, base_url=None, api_key=None, models=None, weight=1.0, timeout=60.0,
                 connect_timeout=5.0, max_connections=50, deployment=None, api_version=None,
                 max_response_bytes=DEFAULT_MAX_RESPONSE_BYTES):
        self.name = name
        self.type = type
        self.base_url = base_url
        self.scheme = self.host = self.port = None
        self.base_path = ""
        if base_url:
            parts = urlsplit(base_url)
            self.scheme = parts.scheme
            self.host = parts.hostname
            self.port = parts.port or (443 if parts.scheme == "https" else 80)
            self.base_path = api_root(type, parts.path)
        self.api_key = api_key
        self.models = tuple(models) if models is not None else None
        self.model_names = frozenset(m for m in self.models or () if not is_pattern(m))
        self.model_patterns = tuple(m for m in self.models or () if is_pattern(m))
        self.weight = float(weight)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_connections = max_connections
        self.deployment = deployment
        self.api_version = api_version
        self.max_response_bytes = max_response_bytes

    def listed(self, model):
        """``exact`` when ``models`` names ``model``, ``pattern`` when one of its patterns matches, else None."""
        if model in self.model_names:
            return "exact"
        if any(fnmatchcase(model, pattern) for pattern in self.model_patterns):
            return "pattern"
        return None

    @property
    def first_model(self):
        """The first model ``models`` names outright (not a pattern), or None."""
        return next((m for m in self.models or () if not is_pattern(m)), None)

    def as_config(self):
        """The ``providers[]`` entry this spec stands for (defaults filled in; the key as ``***``)."""
        entry = {"name": self.name, "type": self.type}
        if self.models is not None:
            entry["models"] = list(self.models)
        entry["weight"] = self.weight
        if self.type == "offline":
            return entry
        entry["base_url"] = self.base_url
        if self.api_key:
            entry["api_key"] = "***"
        entry.update(timeout_seconds=self.timeout, connect_timeout_seconds=self.connect_timeout,
                     max_connections=self.max_connections, max_response_bytes=self.max_response_bytes)
        if self.type == "azure":
            entry.update(deployment=self.deployment, api_version=self.api_version)
        return entry

    @property
    def secrets(self):
        """Strings that must never leave the process (scrubbed from upstream messages)."""
        return (self.api_key,) if self.api_key else ()

    @property
    def hostport(self):
        """``host:port`` of the base URL (no key, path or query), or None for a built-in provider."""
        if not self.host:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __repr__(self):
        return f"ProviderSpec(name={self.name!r}, type={self.type!r}, host={self.hostport!r})"


def _number(where, value, *, minimum, exclusive=False, integer=False):
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (value <= minimum if exclusive else value < minimum):
        bound = f"greater than {minimum}" if exclusive else f"at least {minimum}"
        raise ConfigError(f"config key '{where}' must be {'an integer' if integer else 'a number'} {bound}")
    return value


def _base_url(where, value):
    if not isinstance(value, str) or not value:
        raise ConfigError(f"config key '{where}' must be a URL like https://api.example.com/v1")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ConfigError(f"config key '{where}' is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"config key '{where}' must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ConfigError(f"config key '{where}' must not hold credentials; use api_key or api_key_env")
    if parts.query or parts.fragment:
        raise ConfigError(f"config key '{where}' must not have a query string or fragment")
    del port
    return value


def spec_from_entry(index, entry, environ):
    """Validate one ``providers[index]`` entry and return its ``ProviderSpec``."""
    where = f"providers[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"config key '{where}' must be an object with at least 'type'")
    ptype = entry.get("type")
    if ptype not in TYPES:
        raise ConfigError(f"config key '{where}.type' must be one of {', '.join(TYPES)}, got {ptype!r}")
    allowed = OFFLINE_KEYS if ptype == "offline" else KEYS
    unknown = set(entry) - allowed
    if unknown:
        raise ConfigError(f"unknown config key '{where}.{sorted(unknown)[0]}'"
                          + (" (the offline provider takes name, type, models and weight)" if ptype == "offline" else ""))
    name = entry.get("name", ptype)
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"config key '{where}.name' must be 1-64 letters, digits, '.', '_' or '-'")
    models = entry.get("models")
    if models is not None:
        if (not isinstance(models, list) or not models
                or not all(isinstance(m, str) and 0 < len(m) <= 200 for m in models)):
            raise ConfigError(f"config key '{where}.models' must be a non-empty list of model names or patterns")
    kwargs = {"models": models, "weight": _number(f"{where}.weight", entry.get("weight", 1), minimum=0)}
    if ptype == "offline":
        return ProviderSpec(name, ptype, **kwargs)
    base_url = entry.get("base_url", DEFAULT_BASE_URLS.get(ptype))
    if base_url is None:
        raise ConfigError(f"config key '{where}.base_url' is required for an azure provider "
                          "(the endpoint, https://NAME.openai.azure.com)")
    kwargs["base_url"] = _base_url(f"{where}.base_url", base_url)
    kwargs["api_key"] = _api_key(where, entry, environ)
    kwargs["timeout"] = _number(f"{where}.timeout_seconds", entry.get("timeout_seconds", 60.0), minimum=0,
                                exclusive=True)
    kwargs["connect_timeout"] = _number(f"{where}.connect_timeout_seconds",
                                        entry.get("connect_timeout_seconds", 5.0), minimum=0, exclusive=True)
    kwargs["max_connections"] = _number(f"{where}.max_connections", entry.get("max_connections", 50), minimum=1,
                                        integer=True)
    kwargs["max_response_bytes"] = _number(f"{where}.max_response_bytes",
                                           entry.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES),
                                           minimum=1024, integer=True)
    for key in ("deployment", "api_version"):
        value = entry.get(key)
        if value is not None and (ptype != "azure" or not isinstance(value, str) or not value
                                  or not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", value)):
            raise ConfigError(f"config key '{where}.{key}' " + ("is for azure providers only" if ptype != "azure"
                                                                else "must be a name of letters, digits, '.', '_' or '-'"))
        kwargs[key] = value
    if ptype == "azure" and not kwargs["api_version"]:
        kwargs["api_version"] = DEFAULT_AZURE_API_VERSION
    return ProviderSpec(name, ptype, **kwargs)


def _api_key(where, entry, environ):
    if "api_key" in entry and "api_key_env" in entry:
        raise ConfigError(f"config key '{where}' takes api_key or api_key_env, not both")
    if "api_key_env" in entry:
        var = entry["api_key_env"]
        if not isinstance(var, str) or not var:
            raise ConfigError(f"config key '{where}.api_key_env' must name an environment variable")
        key = environ.get(var)
        if not key:
            raise ConfigError(f"config key '{where}.api_key_env': environment variable {var} is not set")
        return key
    key = entry.get("api_key")
    if key is not None and (not isinstance(key, str) or not key):
        raise ConfigError(f"config key '{where}.api_key' must be a non-empty string")
    return key


def environment_entries(environ):
    """Provider entries from the OPENAI_*, ANTHROPIC_* and AZURE_OPENAI_* environment variables."""
    entries = []
    if environ.get("OPENAI_API_KEY"):
        entry = {"name": "openai", "type": "openai", "api_key": environ["OPENAI_API_KEY"]}
        if environ.get("OPENAI_BASE_URL"):
            entry["base_url"] = environ["OPENAI_BASE_URL"]
        if _host_of(entry.get("base_url")) in (None, "api.openai.com"):
            entry["models"] = list(SHORTCUT_MODELS["openai"])
        entries.append(("OPENAI_*", entry))
    if environ.get("ANTHROPIC_API_KEY"):
        entry = {"name": "anthropic", "type": "anthropic", "api_key": environ["ANTHROPIC_API_KEY"],
                 "models": list(SHORTCUT_MODELS["anthropic"])}
        if environ.get("ANTHROPIC_BASE_URL"):
            entry["base_url"] = environ["ANTHROPIC_BASE_URL"]
        entries.append(("ANTHROPIC_*", entry))
    if environ.get("AZURE_OPENAI_API_KEY"):
        for var in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT"):
            if not environ.get(var):
                raise ConfigError(f"environment variable {var} must be set along with AZURE_OPENAI_API_KEY")
        entry = {"name": "azure", "type": "azure", "api_key": environ["AZURE_OPENAI_API_KEY"],
                 "base_url": environ["AZURE_OPENAI_ENDPOINT"], "deployment": environ["AZURE_OPENAI_DEPLOYMENT"],
                 "models": [environ["AZURE_OPENAI_DEPLOYMENT"], *SHORTCUT_MODELS["azure"]]}
        if environ.get("AZURE_OPENAI_API_VERSION"):
            entry["api_version"] = environ["AZURE_OPENAI_API_VERSION"]
        entries.append(("AZURE_OPENAI_*", entry))
    return entries


def _host_of(url):
    try:
        return urlsplit(url).hostname if url else None
    except ValueError:
        return ""  # not a URL: spec_from_entry names the variable


def load_specs(entries, environ):
    """Every configured provider, then the environment's, in order; names must be unique."""
    if not isinstance(entries, list):
        raise ConfigError("config key 'providers' must be a list of provider objects")
    specs = [spec_from_entry(i, entry, environ) for i, entry in enumerate(entries)]
    names = set()
    for i, spec in enumerate(specs):
        if spec.name in names:
            raise ConfigError(f"config key 'providers[{i}].name': provider name {spec.name!r} is used twice")
        names.add(spec.name)
    for source, entry in environment_entries(environ):
        if entry["name"] in names:
            continue
        try:
            specs.append(spec_from_entry(len(specs), entry, environ))
        except ConfigError as e:
            raise ConfigError(f"environment variables {source}: {e}") from None
        names.add(entry["name"])
    return specs


def effective_entries(entries, environ):
    """The ``providers`` the service runs with -- configured, from the environment, else the offline one --
    as config entries with every key shown as ``***`` (for ``--print-config``)."""
    specs = load_specs(entries, environ) or [ProviderSpec("offline", "offline")]
    return [spec.as_config() for spec in specs]


STRATEGIES = ("round_robin", "priority")


def alias_entries(section, provider_names):
    """The ``models`` section validated: alias -> ``[(provider_name, model)]`` in order."""
    if not isinstance(section, dict):
        raise ConfigError("config key 'models' must be an object of alias -> list of {provider, model}")
    aliases = {}
    for alias, entries in section.items():
        where = f"models.{alias}"
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"config key '{where}' must be a non-empty list of {{provider, model}} or "
                              "'provider/model' strings")
        pairs = []
        for i, item in enumerate(entries):
            if isinstance(item, str) and "/" in item:
                name, model = item.split("/", 1)
            elif isinstance(item, dict) and set(item) <= {"provider", "model"}:
                name, model = item.get("provider"), item.get("model")
            else:
                raise ConfigError(f"config key '{where}[{i}]' must be {{\"provider\", \"model\"}} or 'provider/model'")
            if name not in provider_names:
                raise ConfigError(f"config key '{where}[{i}]' names provider {name!r}, which is not configured "
                                  f"(configured: {', '.join(provider_names)})")
            if not isinstance(model, str) or not model:
                raise ConfigError(f"config key '{where}[{i}].model' must be a model name")
            pairs.append((name, model))
        aliases[alias] = pairs
    return aliases


def routing_strategies(routing):
    """``(strategy, per_model)`` from the ``routing`` section, validated."""
    strategy = routing.get("strategy", "round_robin")
    if strategy not in STRATEGIES:
        raise ConfigError(f"config key 'routing.strategy' must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    per_model = routing.get("per_model", {})
    if not isinstance(per_model, dict):
        raise ConfigError("config key 'routing.per_model' must be an object of alias -> strategy")
    for alias, value in per_model.items():
        if value not in STRATEGIES:
            raise ConfigError(f"config key 'routing.per_model.{alias}' must be one of {', '.join(STRATEGIES)}")
    return strategy, dict(per_model)
