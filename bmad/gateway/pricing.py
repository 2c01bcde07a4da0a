"""What a completion costs: USD per million prompt and completion tokens, by model.

The shipped table (``pricing.json``, with the date it was taken) is the
default; the ``pricing`` config section overrides or adds models:
``{"gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.60}}``.
A model is looked up by its exact name, then without a trailing
``-latest`` or release date (``claude-3-5-haiku-20241022`` ->
``claude-3-5-haiku``). An unknown model costs 0 and ``priced()`` says so.
"""

import json
import re
from functools import lru_cache
from pathlib import Path

from ..errors import ConfigError

TABLE_PATH = Path(__file__).with_name("pricing.json")
RATE_KEYS = ("input_per_mtok", "output_per_mtok")
_SUFFIX = re.compile(r"(-latest|-\d{8}|-\d{4}-\d{2}-\d{2})$")


def _check_rates(where, rates):
    if not isinstance(rates, dict):
        raise ConfigError(f"config key '{where}' must be an object with input_per_mtok and output_per_mtok")
    unknown = set(rates) - set(RATE_KEYS)
    if unknown:
        raise ConfigError(f"unknown config key '{where}.{sorted(unknown)[0]}'")
    for key in RATE_KEYS:
        value = rates.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"config key '{where}.{key}' must be a number of USD per million tokens, at least 0")
    return float(rates["input_per_mtok"]), float(rates["output_per_mtok"])


class Pricing:
    """Model -> (input, output) USD per million tokens, and the cost of a usage."""

    def __init__(self, rates, taken=None):
        self._rates = dict(rates)
        self.taken = taken
        self._lookup = lru_cache(maxsize=512)(self._find)

    @classmethod
    def load(cls, overrides=None, path=TABLE_PATH):
        """The shipped table with the config's ``pricing`` section laid over it."""
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
        rates = {name: _check_rates(f"pricing.json models.{name}", r) for name, r in table["models"].items()}
        if overrides is not None and not isinstance(overrides, dict):
            raise ConfigError("config key 'pricing' must be an object of model -> rates")
        for name, r in (overrides or {}).items():
            rates[name] = _check_rates(f"pricing.{name}", r)
        return cls(rates, table.get("taken"))

    def _find(self, model):
        if model in self._rates:
            return self._rates[model]
        name = model.lower()
        for _ in range(2):  # e.g. "-2024-07-18" then nothing, or "-latest"
            if name in self._rates:
                return self._rates[name]
            stripped = _SUFFIX.sub("", name)
            if stripped == name:
                break
            name = stripped
        return self._rates.get(name)

    def rates(self, model):
        """``(input_per_mtok, output_per_mtok)`` for ``model``, or None when it is not in the table."""
        if not isinstance(model, str) or not model:
            return None
        return self._lookup(model[:200])

    def priced(self, model):
        """True when the table knows ``model``."""
        return self.rates(model) is not None

    def cost(self, model, prompt_tokens, completion_tokens, *fallbacks):
        """USD for this usage; the first of ``model`` and ``fallbacks`` the table knows sets the rates."""
        for name in (model,) + fallbacks:
            rates = self.rates(name)
            if rates is not None:
                return round((prompt_tokens * rates[0] + completion_tokens * rates[1]) / 1_000_000, 10)
        return 0.0

    def table(self):
        """The effective table, for status pages."""
        return {name: {"input_per_mtok": r[0], "output_per_mtok": r[1]} for name, r in sorted(self._rates.items())}
