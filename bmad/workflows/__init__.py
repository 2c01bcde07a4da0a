"""Workflow runs: durable, resumable BMAD workflows that chain the role agents.

``build(...)`` validates the ``workflows`` and ``tools`` config, opens
``{data_dir}/runs.db`` and builds the engine with its metrics; the
composition root starts it last (``start()`` resumes any run a previous
process left unfinished, so everything it calls must exist by then).
"""

import os
import sqlite3
from pathlib import Path

from ..errors import ConfigError
from ..gateway.chat import MAX_MODEL_CHARS
from .engine import Engine
from .executor import AppExecutor  # noqa: F401 (the composition root builds it)
from .store import RunStore

LIMITS = {"workers": (1, 64), "queue_limit": (1, 100_000), "max_parallel_steps": (1, 32), "step_retries": (0, 10)}
TOOL_KEYS = {"model"}


def validate(config, catalog):
    """Check ``workflows.*`` ranges and that ``tools`` names known tools with a string ``model``."""
    section = config["workflows"]
    for key, (low, high) in LIMITS.items():
        if not low <= section[key] <= high:
            raise ConfigError(f"config key 'workflows.{key}' must be between {low} and {high}, got {section[key]}")
    for tool_id, entry in config.get("tools", {}).items():
        if tool_id not in catalog.tools:
            raise ConfigError(f"config key 'tools.{tool_id}': no such tool in the catalog")
        if not isinstance(entry, dict):
            raise ConfigError(f"config key 'tools.{tool_id}' must be an object such as {{\"model\": \"...\"}}")
        unknown = set(entry) - TOOL_KEYS
        if unknown:
            raise ConfigError(f"unknown config key 'tools.{tool_id}.{sorted(unknown)[0]}'")
        model = entry.get("model")
        if model is not None and (not isinstance(model, str) or not 0 < len(model) <= MAX_MODEL_CHARS):
            raise ConfigError(f"config key 'tools.{tool_id}.model' must be a model name of 1-{MAX_MODEL_CHARS} "
                              "characters")


def _metrics(registry):
    return {
        "runs": registry.counter("bmad_workflow_runs_total", "Workflow runs finished, by final state.",
                                 ("workflow", "status")),
        "active": registry.gauge("bmad_workflow_runs_active", "Workflow runs executing now."),
        "step_duration": registry.histogram(
            "bmad_workflow_step_duration_seconds", "Time a workflow step took, retries included.",
            ("workflow", "tool"), buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)),
    }


def build(config, catalog, executor, *, events, metrics, logger, clock):
    """Validate the config, open ``{data_dir}/runs.db`` and build the engine (not started yet)."""
    validate(config, catalog)
    data_dir = Path(config["data_dir"])
    try:
        os.makedirs(data_dir, exist_ok=True)
        store = RunStore.open(data_dir / "runs.db", logger)
    except (OSError, sqlite3.Error) as e:
        raise ConfigError(f"data_dir {data_dir}: cannot open runs.db ({getattr(e, 'strerror', None) or e})") from None
    families = _metrics(metrics)
    families["active"].set(0)
    return Engine(store, catalog, executor, config, on_event=events.record, metrics=families, logger=logger,
                  clock=clock)
