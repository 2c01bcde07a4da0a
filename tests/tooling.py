"""Helpers for tests that need outside tools, and the metric-name contract.

``require_tool`` and ``require_module`` skip a test on a laptop that lacks a
tool, but fail it when ``BMAD_REQUIRE_TOOLS=1`` (CI), so a missing install
step cannot hide behind a green run.

``promql_metric_names`` pulls the metric names out of a PromQL expression; the
deploy tests use it to hold every alert rule and dashboard query to the
service's fixed list of metric names (``SERVICE_METRICS``), and a live-scrape
test can use it to check those names against a running server.
"""

import importlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = REPO_ROOT / "k8s"
PROMETHEUS_RULES = K8S_DIR / "prometheus-rules.yaml"
DASHBOARD = K8S_DIR / "dashboards" / "bmad-api.json"


def tools_required():
    """True when a missing tool must fail the test instead of skipping it."""
    return os.environ.get("BMAD_REQUIRE_TOOLS", "") == "1"


def _missing(reason):
    if tools_required():
        pytest.fail(f"{reason} (BMAD_REQUIRE_TOOLS=1)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_tool(name):
    """Return the path of executable ``name``; skip (or fail under BMAD_REQUIRE_TOOLS=1) when absent."""
    path = shutil.which(name)
    if path is None:
        _missing(f"tool {name!r} is not installed")
    return path


def require_module(name):
    """Import and return Python module ``name``; skip (or fail under BMAD_REQUIRE_TOOLS=1) when absent."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        _missing(f"Python module {name!r} is not installed ({e})")


# --- the metric-name contract --------------------------------------------------

# Histograms are exposed as three series families.
_HISTOGRAMS = (
    "bmad_http_request_duration_seconds",
    "bmad_provider_request_duration_seconds",
    "bmad_workflow_step_duration_seconds",
)

# Every name the service exposes on /bmad/metrics (the fixed contract).
SERVICE_METRICS = frozenset(
    {
        "bmad_build_info",
        "bmad_http_requests_total",
        "bmad_http_requests_in_flight",
        "bmad_cache_hits_total",
        "bmad_cache_misses_total",
        "bmad_cache_evictions_total",
        "bmad_cache_entries",
        "bmad_rate_limited_total",
        "bmad_dedup_coalesced_total",
        "bmad_provider_requests_total",
        "bmad_provider_up",
        "bmad_circuit_breaker_state",
        "bmad_provider_failovers_total",
        "bmad_llm_tokens_total",
        "bmad_llm_cost_usd_total",
        "bmad_tool_executions_total",
        "bmad_workflow_runs_total",
        "bmad_workflow_runs_active",
        "bmad_analytics_events_total",
        "bmad_analytics_events_dropped_total",
        "bmad_analytics_queue_depth",
        "bmad_pool_connections",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    }
    | {f"{family}{suffix}" for family in _HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
)

# Names that come from Prometheus itself or kube-state-metrics, not the service.
EXTERNAL_METRICS = frozenset({"up", "kube_pod_container_status_restarts_total"})

ALLOWED_METRICS = SERVICE_METRICS | EXTERNAL_METRICS


# --- PromQL metric-name extraction ----------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*=\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
# Grafana variables: $var, ${var}, ${var:format}, [[var]].
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\]")
# Label lists after grouping modifiers name labels, not metrics.
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_COMMENT = re.compile(r"#[^\n]*")
# An identifier not glued to a preceding name, digit, dot or '$' (so '5m', '1e3' and '0x1f' are skipped).
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)")

_KEYWORDS = frozenset(
    {
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
        "offset", "bool", "inf", "nan",
    }
)


def promql_metric_names(expr):
    """Return the set of metric names that PromQL expression ``expr`` selects.

    Function and aggregation names, keywords, label names and label values,
    durations, numbers and Grafana variables are not metric names. A selector
    written as ``{__name__="x"}`` yields ``x``.
    """
    names = set()
    for quoted in _NAME_MATCHER.findall(expr):
        names.add(quoted[1:-1])
    text = _COMMENT.sub(" ", expr)
    text = _STRING.sub('""', text)
    text = _GRAFANA_VARIABLE.sub("1", text)
    while True:  # selectors and range/subquery brackets never nest in PromQL, but be thorough
        stripped = _BRACKETS.sub(" ", _BRACES.sub(" ", text))
        if stripped == text:
            break
        text = stripped
    text = _LABEL_LIST.sub(" ", text)
    for match in _IDENTIFIER.finditer(text):
        name = match.group(1)
        rest = text[match.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation operator
        if name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


# --- where the deployed PromQL lives -------------------------------------------

def _load_yaml_documents(path):
    yaml = require_module("yaml")
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def rule_groups(path=PROMETHEUS_RULES):
    """Return the rule groups (``spec.groups``) of the PrometheusRule in ``path``."""
    groups = []
    for doc in _load_yaml_documents(path):
        if doc.get("kind") == "PrometheusRule":
            groups.extend(doc["spec"]["groups"])
    return groups


def rule_expressions(path=PROMETHEUS_RULES):
    """Yield ``(rule name, expr)`` for every alerting and recording rule."""
    for group in rule_groups(path):
        for rule in group["rules"]:
            yield rule.get("alert") or rule.get("record"), str(rule["expr"])


def _walk_panels(panels):
    for panel in panels:
        yield panel
        yield from _walk_panels(panel.get("panels", []))


def dashboard_expressions(path=DASHBOARD):
    """Yield ``(where, expr)`` for every Prometheus query in the Grafana dashboard.

    That covers panel targets and the templating variables' queries; a
    ``label_values(selector, label)`` query yields its selector.
    """
    with open(path, encoding="utf-8") as f:
        dashboard = json.load(f)
    for panel in _walk_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield f"panel {panel.get('title')!r} target {target.get('refId')}", target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query or "", re.S)
        if match:
            yield f"variable {variable['name']!r}", match.group(1)
        elif query:
            yield f"variable {variable['name']!r}", re.sub(r"^\s*query_result\((.*)\)\s*$", r"\1", query, flags=re.S)


def monitoring_metric_names():
    """Return every metric name that the alert rules and the dashboard query."""
    names = set()
    for _, expr in list(rule_expressions()) + list(dashboard_expressions()):
        names |= promql_metric_names(expr)
    return names
