"""The event vocabulary: known types, stored columns, and how raw fields become a row.

Every part of the service records through ``app.events.record(type, **fields)``.
This module turns those keyword arguments into one row of the ``events``
table: known fields go to typed columns (aliases such as ``duration_ms`` map
onto their column), short scalar extras go to a small JSON ``extra`` column,
and anything that looks like prompt/completion text or a secret is dropped.
Normalising never raises: a value of the wrong type is left out.
"""

import json

EVENT_TYPES = frozenset({
    "api_request", "tool_execution", "workflow_started", "workflow_step_completed", "workflow_completed",
    "workflow_failed", "workflow_cancelled", "provider_request", "provider_failure", "provider_failover", "cache_hit",
    "rate_limited", "circuit_state_changed", "session_started", "auth_failed",
})

# Column name -> kind. The order is the order of the ``events`` table after (ts, type).
COLUMNS = (
    ("user_id", "text"), ("session_id", "text"), ("route", "text"), ("method", "text"), ("status", "int"),
    ("outcome", "text"), ("error", "bool"), ("error_type", "text"), ("latency_ms", "real"), ("tool", "text"),
    ("workflow", "text"), ("run_id", "text"), ("step", "text"), ("provider", "text"), ("model", "text"),
    ("prompt_tokens", "int"), ("completion_tokens", "int"), ("cost_usd", "real"), ("total_tokens", "int"),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
INDEX = {name: i for i, name in enumerate(COLUMN_NAMES)}
ROW_COLUMNS = ("ts", "type") + COLUMN_NAMES + ("extra",)
EVENTS_COLUMNS = ROW_COLUMNS  # the ``events`` table's columns besides ``id``, in insert order

# Positions in a row (a list in ROW_COLUMNS order: ts, type, the columns, extra).
TS, TYPE = 0, 1
ROW_OFFSET = 2
USER = ROW_OFFSET + INDEX["user_id"]
SESSION = ROW_OFFSET + INDEX["session_id"]
ERROR = ROW_OFFSET + INDEX["error"]
LATENCY = ROW_OFFSET + INDEX["latency_ms"]
RUN_ID = ROW_OFFSET + INDEX["run_id"]
PROMPT = ROW_OFFSET + INDEX["prompt_tokens"]
COMPLETION = ROW_OFFSET + INDEX["completion_tokens"]
COST = ROW_OFFSET + INDEX["cost_usd"]
TOTAL = ROW_OFFSET + INDEX["total_tokens"]

# Other names callers use for a column (the first one given wins).
ALIASES = {
    "user": "user_id", "duration_ms": "latency_ms", "tool_id": "tool", "workflow_id": "workflow",
    "step_id": "step", "from_provider": "provider", "input_tokens": "prompt_tokens",
    "output_tokens": "completion_tokens", "cost": "cost_usd", "state": "outcome", "new_state": "outcome",
    "to_state": "outcome", "to": "outcome", "result": "outcome", "tokens": "total_tokens",
}

MAX_TEXT = {"user_id": 128, "route": 256, "method": 16}
DEFAULT_MAX_TEXT = 128
MAX_EXTRA_CHARS = 1024
MAX_EXTRA_TEXT = 128

# Field names never stored, even in ``extra``: the content of prompts and answers (privacy) and secrets.
CONTENT_NAMES = frozenset({"prompt", "prompts", "messages", "message", "completion", "content", "text", "output",
                           "input", "body", "response", "request", "artifact", "artifacts", "context"})
SECRET_NAMES = frozenset({"key", "api_key", "authorization", "password", "secret", "token", "bearer"})

# Textual outcomes that mean something went wrong.
FAILED_OUTCOMES = frozenset({"failed", "failure", "error", "errored", "timeout", "cancelled", "canceled",
                             "rejected", "open"})
ERROR_TYPES = frozenset({"provider_failure", "workflow_failed", "auth_failed", "rate_limited"})


def _text(value, limit):
    if isinstance(value, str):
        return value[:limit] if value else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)[:limit]
    return None


def _int(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -2**62 < value < 2**62 else None
    if isinstance(value, float) and value == value and abs(value) < 2**62:
        return int(value)
    return None


def _real(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        value = float(value)
        return value if value == value and abs(value) < 1e300 else None
    return None


def _dropped_name(name):
    lowered = name.lower()
    return (lowered in CONTENT_NAMES or lowered in SECRET_NAMES
            or lowered.endswith(("_key", "_secret", "_token", "_password", "_text", "_content")))


def normalize(type, ts, fields):
    """Return the ``events`` row (a list in ``ROW_COLUMNS`` order) for one event; never raises."""
    row = [None] * len(COLUMN_NAMES)
    extra = None
    for name, value in fields.items():
        if value is None:
            continue
        column = name if name in INDEX else ALIASES.get(name)
        if column is None:
            if _dropped_name(name) or not isinstance(name, str) or len(name) > 64:
                continue
            if isinstance(value, str):
                value = value[:MAX_EXTRA_TEXT]
            elif not isinstance(value, (int, float, bool)):
                continue
            if extra is None:
                extra = {}
            extra[name] = value
            continue
        i = INDEX[column]
        if row[i] is not None:
            continue
        if column == "status" and isinstance(value, str):
            column, i = "outcome", INDEX["outcome"]
            if row[i] is not None:
                continue
        kind = COLUMNS[i][1]
        if kind == "text":
            row[i] = _text(value, MAX_TEXT.get(column, DEFAULT_MAX_TEXT))
        elif kind == "int":
            row[i] = _int(value)
        elif kind == "real":
            row[i] = _real(value)
        else:
            row[i] = 1 if value else 0
    if row[INDEX["error"]] is None:
        row[INDEX["error"]] = is_error(type, row)
    if row[INDEX["total_tokens"]] is None and (row[INDEX["prompt_tokens"]] or row[INDEX["completion_tokens"]]):
        row[INDEX["total_tokens"]] = (row[INDEX["prompt_tokens"]] or 0) + (row[INDEX["completion_tokens"]] or 0)
    encoded = None
    if extra:
        try:
            encoded = json.dumps(extra, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError:
            encoded = None
        if encoded is not None and len(encoded) > MAX_EXTRA_CHARS:
            encoded = None
    return [ts, type] + row + [encoded]


def is_error(type, row):
    """1 when the event reports a failure: a failure type, an error_type, an HTTP status >= 400 or a failed outcome."""
    if type == "workflow_cancelled":
        return 0  # someone chose to stop the run; nothing failed
    if type in ERROR_TYPES or row[INDEX["error_type"]] is not None:
        return 1
    status = row[INDEX["status"]]
    if status is not None and status >= 400:
        return 1
    outcome = row[INDEX["outcome"]]
    if outcome is not None and outcome.lower() in FAILED_OUTCOMES and type != "circuit_state_changed":
        return 1
    return 0
