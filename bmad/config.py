"""Configuration: defaults, then a file, then environment variables, then flags.

The shipped ``defaults.json`` is the schema: every key a user may set appears
there with its default, and its type is the default's type (a float default
also accepts an integer; a null default accepts a string). A section whose
default is an empty object or list is free-form here and validated by the
component that owns it.
"""

import copy
import json
import os
import re
from pathlib import Path

from .errors import ConfigError

DEFAULTS_PATH = Path(__file__).with_name("defaults.json")

SECRET_NAMES = {"key", "api_key", "token", "password", "secret"}
URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^/]*@")

LOG_LEVELS = ("debug", "info", "warning", "error")


def _parse_api_keys(text):
    """Parse ``BMAD_API_KEYS="key1:alice:admin,key2:bob"`` into key entries."""
    entries = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = item.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise ConfigError("environment variable BMAD_API_KEYS: each entry must be key:user or key:user:role")
        entries.append({"key": parts[0], "user": parts[1], "role": parts[2] if len(parts) == 3 else "user"})
    return entries


# Environment variable -> (dotted key, parser). Parsers raise ValueError on bad text.
ENVIRONMENT = {
    "BMAD_HOST": ("server.host", str),
    "BMAD_PORT": ("server.port", int),
    "BMAD_DATA_DIR": ("data_dir", str),
    "BMAD_CATALOG_DIR": ("catalog_dir", str),
    "BMAD_LOG_LEVEL": ("log_level", str),
    "BMAD_METRICS_TOKEN": ("metrics.token", str),
    "BMAD_API_KEYS": ("auth.api_keys", _parse_api_keys),
    "BMAD_REDIS_URL": ("state.redis_url", str),
}


class Config(dict):
    """The effective configuration: nested dicts, read with ``at("a.b")``."""

    def at(self, dotted, default=None):
        """Return the value at a dotted key, or ``default`` when absent."""
        node = self
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


def load_defaults():
    """Return a fresh copy of the shipped defaults."""
    with open(DEFAULTS_PATH, encoding="utf-8") as f:
        return json.load(f)


def read_file(path):
    """Read a JSON or TOML config file; any problem is a ConfigError naming the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"config file {path}: cannot read it ({e.strerror or e})") from None
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:
                raise ConfigError(f"config file {path}: TOML needs Python 3.11 or newer; use JSON") from None
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except ConfigError:
        raise
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path}: not valid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'} ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be an object")
    return data


def _type_name(default):
    if isinstance(default, bool):
        return "a boolean"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str) or default is None:
        return "a string"
    if isinstance(default, list):
        return "a list"
    return "an object"


def _fits(default, value):
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if default is None:
        return value is None or isinstance(value, str)
    return isinstance(value, type(default))


def merge(base, overlay, prefix=""):
    """Merge ``overlay`` into ``base`` in place, checking keys and types against ``base``."""
    for key, value in overlay.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"unknown config key '{dotted}'")
        default = base[key]
        if not _fits(default, value):
            raise ConfigError(f"config key '{dotted}' must be {_type_name(default)}, got {json.dumps(value)[:80]}")
        if isinstance(default, dict) and default:
            merge(default, value, dotted + ".")
        else:
            base[key] = float(value) if isinstance(default, float) else copy.deepcopy(value)


def _set_dotted(tree, dotted, value):
    parts = dotted.split(".")
    overlay = node = {}
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    merge(tree, overlay)


def from_environment(environ):
    """Return ``(dotted_key, value)`` pairs for the BMAD_* variables that are set."""
    pairs = []
    for name, (dotted, parse) in ENVIRONMENT.items():
        text = environ.get(name)
        if text is None or text == "":
            continue
        try:
            pairs.append((dotted, parse(text)))
        except ValueError:
            raise ConfigError(f"environment variable {name} must be {'an integer' if parse is int else 'valid'}, got {text!r}") from None
    return pairs


def load(config_file=None, environ=None, overrides=None, data=None):
    """Build the effective configuration.

    Precedence, lowest first: shipped defaults, the config file (``config_file``
    or ``BMAD_CONFIG``) or ``data`` (a dict laid out like a config file),
    environment variables, then ``overrides`` (a dict of dotted keys from
    command-line flags).
    """
    environ = os.environ if environ is None else environ
    tree = load_defaults()
    config_file = config_file or environ.get("BMAD_CONFIG") or None
    if config_file:
        merge(tree, read_file(config_file))
    if data:
        merge(tree, copy.deepcopy(data))
    for dotted, value in from_environment(environ):
        _set_dotted(tree, dotted, value)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(tree, dotted, value)
    config = Config(tree)
    validate(config)
    return config


def validate(config):
    """Check the values whose rules go beyond their type."""
    port = config.at("server.port")
    if not 0 <= port <= 65535:
        raise ConfigError(f"config key 'server.port' must be between 0 and 65535, got {port}")
    if config["log_level"] not in LOG_LEVELS:
        raise ConfigError(f"config key 'log_level' must be one of {', '.join(LOG_LEVELS)}, got {config['log_level']!r}")
    for key in ("max_body_bytes", "max_header_bytes", "max_json_depth", "max_connections"):
        if config["server"][key] < 1:
            raise ConfigError(f"config key 'server.{key}' must be at least 1")
    for key in ("header_timeout_seconds", "keepalive_seconds", "drain_seconds"):
        if config["server"][key] <= 0:
            raise ConfigError(f"config key 'server.{key}' must be greater than 0")


def redacted(value, name=""):
    """Return a copy of ``value`` with every secret replaced by ``***``."""
    if isinstance(value, dict):
        return {k: redacted(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v, name) for v in value]
    lowered = name.lower()
    if value not in (None, "") and (lowered in SECRET_NAMES or lowered.endswith(("_key", "_token", "_secret"))):
        return "***"
    if isinstance(value, str) and lowered.endswith("_url"):
        return URL_PASSWORD.sub(r"\1***@", value)
    return value
