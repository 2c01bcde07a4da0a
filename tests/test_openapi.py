"""The OpenAPI contract: one entry per route, a valid 3.1 document, and schemathesis finding nothing.

``test_schemathesis_finds_no_issue`` runs the schemathesis CLI with every
check against a live server (open mode, offline provider, rate limits off
so generated traffic reaches the handlers). It is bounded by
``--max-examples`` and a subprocess timeout; ``BMAD_SCHEMATHESIS_EXAMPLES``
and ``BMAD_SCHEMATHESIS_SEED`` widen or vary it on demand. The settings it
needs beyond the defaults, each with its reason, are in
``tests/schemathesis.toml``.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bmad.handlers.openapi import build_document, load_entries, missing_entries, orphan_entries
from tests.tooling import require_module, require_tool

CONFIG_FILE = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = int(os.environ.get("BMAD_SCHEMATHESIS_EXAMPLES", "8"))
SEED = os.environ.get("BMAD_SCHEMATHESIS_SEED", "20261125")
RUN_TIMEOUT_SECONDS = 150


def test_every_route_has_an_entry(start_app):
    service = start_app()
    missing = missing_entries(service.app.router.routes, load_entries())
    assert not missing, ("routes with no entry in bmad/openapi_paths.json (add one per method and template): "
                         + ", ".join(missing))


def test_every_entry_has_a_route(start_app):
    service = start_app()
    orphans = orphan_entries(service.app.router.routes, load_entries())
    assert not orphans, "entries in bmad/openapi_paths.json that no route serves: " + ", ".join(orphans)


def test_a_route_without_entry_is_named():
    class FakeRoute:
        method, template = "GET", "/bmad/brand-new/{thing_id}"

    entries = load_entries()
    assert missing_entries([FakeRoute()], entries) == ["GET /bmad/brand-new/{thing_id}"]
    with pytest.raises(KeyError, match=re.escape("GET /bmad/brand-new/{thing_id}")):
        build_document([FakeRoute()], entries)


@pytest.mark.slow
def test_served_document_is_valid_openapi_31(start_app, client_for):
    validator = require_module("openapi_spec_validator")
    service = start_app()
    resp = client_for(service).get("/bmad/openapi.json")
    assert resp.status == 200
    doc = resp.json
    assert doc["openapi"] == "3.1.0"
    validator.validate(doc)
    served = {(r.method.lower(), r.template) for r in service.app.router.routes}
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert documented == served


@pytest.mark.slow
def test_document_route_is_open_unlimited_and_unrecorded(start_app, client_for):
    service = start_app(data={"auth": {"api_keys": [{"key": "k-user-1", "user": "alice"}]}})
    route, _ = service.app.router.match("GET", "/bmad/openapi.json")
    assert (route.auth, route.rate_class, route.record) == ("open", None, False)
    resp = client_for(service).get("/bmad/openapi.json")
    assert resp.status == 200
    assert resp.getheader("RateLimit-Limit") is None
    op = resp.json["paths"]["/bmad/openapi.json"]["get"]
    assert op["security"] == [] and op["x-bmad-auth"] == "open"


def test_policies_come_from_the_route_table(start_app, client_for):
    service = start_app(data={"auth": {"api_keys": [{"key": "k-admin-1", "user": "root", "role": "admin"}]}})
    doc = client_for(service).get("/bmad/openapi.json").json
    assert doc["security"] == [{"bearerKey": []}]
    for route in service.app.router.routes:
        op = doc["paths"][route.template][route.method.lower()]
        label = f"{route.method} {route.template}"
        assert op["x-bmad-auth"] == route.auth, label
        assert op["x-bmad-rate-class"] == route.rate_class, label
        assert ("401" in op["responses"]) == (route.auth != "open") or route.template == "/bmad/metrics", label
        assert ("403" in op["responses"]) >= (route.auth == "admin"), label
        # 429: the route's rate class, or (with keys) too many wrong keys from one client
        assert ("429" in op["responses"]) == (route.rate_class is not None or route.auth != "open"), label
        error = op["responses"]["503"]["content"]["application/json"]["schema"]["oneOf"][0]["$ref"]
        expected = "OpenAIError" if route.template.startswith("/v1/") else "Error"
        assert error == f"#/components/schemas/{expected}", label


def test_analytics_days_maximum_follows_the_config(start_app, client_for):
    service = start_app(data={"analytics": {"retention_days": 7}})
    doc = client_for(service).get("/bmad/openapi.json").json
    assert doc["components"]["parameters"]["Days"]["schema"]["maximum"] == 7


def test_error_shapes_match_the_document(start_app, client_for):
    """The two documented error shapes, checked on real answers."""
    jsonschema = require_module("jsonschema")
    service = start_app()
    client = client_for(service)
    doc = client.get("/bmad/openapi.json").json
    schemas = doc["components"]["schemas"]
    bmad_error = client.get("/bmad/tools/no-such-tool")
    assert bmad_error.status == 404
    jsonschema.validate(bmad_error.json, schemas["Error"])
    openai_error = client.post("/v1/chat/completions", body={"model": "bmad-default"})
    assert openai_error.status == 400
    jsonschema.validate(openai_error.json, schemas["OpenAIError"])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["open", "keyed"])
def test_schemathesis_finds_no_issue(start_app, tmp_path, mode):
    """Open mode (X-User-ID) with the full example count; with an admin key (401s, ignored_auth) fewer."""
    require_module("schemathesis")
    cli = require_tool("schemathesis")
    data = {"rate_limits": {"enabled": False}}
    extra, examples = [], EXAMPLES
    if mode == "keyed":
        data["auth"] = {"api_keys": [{"key": "k-contract-admin", "user": "root", "role": "admin"}]}
        extra, examples = ["-H", "Authorization: Bearer k-contract-admin"], max(1, EXAMPLES // 2)
    service = start_app(data=data)
    # --workers 1: with more, hypothesis describes strategies from several threads at once and
    # CPython 3.11's ast module can fail doing that ("AST constructor recursion depth mismatch").
    command = [cli, "--config-file", str(CONFIG_FILE), "run", f"{service.url}/bmad/openapi.json",
               "--checks", "all", "--max-examples", str(examples), "--seed", SEED, "--workers", "1",
               "--request-timeout", "20", "--no-color",
               "--report", "junit", "--report-dir", str(tmp_path / "report"), *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS,
                            env={**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"schemathesis found issues (exit {result.returncode}):\n{output[-12000:]}"
    generated = re.search(r"(\d+) generated", output)
    assert generated and int(generated.group(1)) > 0, output[-3000:]
    # Each accepted start queues a real workflow run; the example count keeps them few (about a dozen),
    # well under workflows.queue_limit, so no 503 queue_full and no long tail of runs to finish.
    runs, _ = service.app.workflows.store.list(workflow=None, state=None, user=None, limit=100, before_seq=None)
    assert len(runs) < 60, f"{len(runs)} workflow runs started; lower the example count"
    print(output[-1500:], file=sys.stderr)


def test_checked_in_config_is_valid_toml():
    import tomllib
    config = tomllib.loads(CONFIG_FILE.read_text(encoding="utf-8"))
    ids = {op_id for entry in config["operations"] for op_id in (
        entry["include-operation-id"] if isinstance(entry["include-operation-id"], list)
        else [entry["include-operation-id"]])}
    documented = {op["operationId"] for item in load_entries()["paths"].values() for op in item.values()}
    assert ids <= documented, f"schemathesis.toml names unknown operations: {sorted(ids - documented)}"


def test_document_is_json_serialisable_without_defaults():
    """The document must be plain JSON (no ``default=str`` fallbacks hiding objects)."""
    entries = load_entries()

    class R:
        def __init__(self, method, template, auth="user", rate_class="api", record=True):
            self.method, self.template, self.auth, self.rate_class, self.record = (
                method, template, auth, rate_class, record)

    routes = [R(m.upper(), t) for t, item in entries["paths"].items() for m in item]
    json.dumps(build_document(routes, entries, open_mode=False))
