"""The OpenAPI 3.1 contract, built from the route table and ``openapi_paths.json``.

The JSON file holds one operation per (method, template) of the route
table, with its parameters, body and success responses, plus the shared
component schemas. What the route table already says is not repeated
there but derived from each ``Route``: path parameters from the template,
the error responses every request can get (401/403, and 429 for too many
wrong keys, from ``auth``; 429 and the ``RateLimit-*`` headers from
``rate_class``; 400 for a bad path parameter; 400/411/413/415 for a JSON
body), the error shape (OpenAI's on ``/v1``), and the ``x-bmad-*``
extensions. ``x-errors`` in an entry maps a status to a description and
becomes an error response of the right shape.

``missing_entries`` and ``orphan_entries`` say where the file and the route
table disagree; the tests fail on either.
"""

import copy
import json
import re
from pathlib import Path

from .. import __version__
from .ui import CONTENT_TYPES, INDEX
from ..http.request import Response, dumps
from ..http.router import MAX_PARAM_CHARS

ENTRIES_PATH = Path(__file__).with_name("openapi_paths.json")
OPENAPI_VERSION = "3.1.0"
PARAM = re.compile(r"\{([^}]+)\}")

# The error responses each policy adds, with the reason given in the document.
AUTH_ERRORS = {"401": "missing or invalid API key (types missing_api_key, invalid_api_key; with WWW-Authenticate)"}
OPEN_MODE_ERRORS = {"401": "X-User-ID is not 1-128 characters of letters, digits and . _ @ : - "
                           "(type invalid_user_id)"}
AUTH_THROTTLE_ERRORS = {"429": "this client sent too many wrong API keys (type rate_limited; Retry-After)"}
ADMIN_ERRORS = {"403": "this endpoint needs an admin key (type forbidden)"}
BODY_ERRORS = {"400": "the body is not a JSON object, is malformed or nested too deeply",
               "411": "no Content-Length (type length_required)",
               "413": "the body is larger than server.max_body_bytes (type payload_too_large)",
               "415": "the body is not application/json (type unsupported_media_type)"}
PATH_ERRORS = {"400": f"a path parameter is longer than {MAX_PARAM_CHARS} characters "
                      "or has a control character, / or \\"}
RATE_ERRORS = {"429": "the rate limit of this route's class is spent "
                      "(type rate_limited; Retry-After says when to retry)"}
ALWAYS_ERRORS = {"503": "the service is draining for shutdown (status draining, Retry-After: 1)"}
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")


def load_entries(path=ENTRIES_PATH):
    """The operation entries and shared components, as stored."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _static_prefix(entries):
    static = entries.get("x-static") or {}
    return static.get("prefix")


def entry_for(entries, method, template):
    """The stored operation for ``method`` on ``template``, or None."""
    explicit = entries["paths"].get(template, {}).get(method.lower())
    if explicit is not None:
        return explicit
    prefix = _static_prefix(entries)
    if prefix and (template == prefix or template.startswith(prefix + "/")) and "{" not in template:
        return entries["x-static"].get(method.lower())
    return None


def missing_entries(routes, entries):
    """``METHOD template`` for each route that has no operation entry."""
    return [f"{r.method} {r.template}" for r in routes if entry_for(entries, r.method, r.template) is None]


def orphan_entries(routes, entries):
    """``METHOD template`` for each operation entry that no route serves."""
    served = {(r.method.lower(), r.template) for r in routes}
    return [f"{method.upper()} {template}" for template, item in entries["paths"].items()
            for method in item if (method, template) not in served]


def _error_response(description, openai_shape, draining=False):
    schema = {"$ref": "#/components/schemas/OpenAIError" if openai_shape else "#/components/schemas/Error"}
    if draining:
        schema = {"oneOf": [schema, {"$ref": "#/components/schemas/Draining"}]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _static_operation(entries, template):
    op = copy.deepcopy(entries["x-static"]["get"])
    prefix = entries["x-static"]["prefix"]
    rest = template[len(prefix):]
    name = rest.lstrip("/") or INDEX
    content_type = CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
    op["operationId"] = "getUI" + (re.sub(r"[^A-Za-z0-9]+", "_", rest) or "_root")
    op["responses"]["200"]["content"] = {content_type: {"schema": {"type": "string"}}}
    return op


def _path_parameters(template):
    # The router's rule (routing._decode): 1-256 characters once decoded, no control character, / or \\.
    return [{"name": name, "in": "path", "required": True,
             "schema": {"type": "string", "minLength": 1, "maxLength": MAX_PARAM_CHARS,
                        "pattern": "^[^\\u0000-\\u001f/\\\\]+$"}}
            for name in PARAM.findall(template)]


def _merge_path_parameters(generated, stored):
    """The generated path parameters, completed by the entry's (description, example), then the entry's others."""
    by_name = {p["name"]: p for p in stored if p.get("in") == "path"}
    merged = [dict(p, **by_name.get(p["name"], {})) for p in generated]
    return merged + [p for p in stored if p.get("in") != "path"]


def _resolve_config_limits(node, config):
    """Apply ``x-maximum-from-config`` (a dotted config key) wherever it appears."""
    if isinstance(node, dict):
        dotted = node.get("x-maximum-from-config")
        if dotted and config is not None:
            value = config.at(dotted)
            if isinstance(value, int) and "schema" in node:
                node["schema"]["maximum"] = value
        for child in node.values():
            _resolve_config_limits(child, config)
    elif isinstance(node, list):
        for child in node:
            _resolve_config_limits(child, config)


def operation(route, entries, *, open_mode):
    """The full OpenAPI operation for one route."""
    stored = entry_for(entries, route.method, route.template)
    if stored is None:
        raise KeyError(f"no OpenAPI entry for {route.method} {route.template}")
    if stored is entries.get("x-static", {}).get(route.method.lower()):
        op = _static_operation(entries, route.template)
    else:
        op = copy.deepcopy(stored)
    openai_shape = route.template.startswith("/v1/")
    params = _merge_path_parameters(_path_parameters(route.template), op.get("parameters", []))
    errors = {}

    def add(more):
        for status, text in more.items():
            errors.setdefault(status, []).append(text)

    if route.auth != "open":
        if open_mode:
            params.append({"name": "X-User-ID", "in": "header",
                           "description": "Open development mode: who the caller is (else anonymous)",
                           "schema": {"type": "string", "pattern": "^[A-Za-z0-9._@:-]{1,128}$"}})
            add(OPEN_MODE_ERRORS)
        else:
            op["security"] = [{"bearerKey": []}]
            add(AUTH_ERRORS)
            add(AUTH_THROTTLE_ERRORS)
            if route.auth == "admin":
                add(ADMIN_ERRORS)
    else:
        op["security"] = []
    if "{" in route.template:
        add(PATH_ERRORS)
    if "requestBody" in op:
        add(BODY_ERRORS)
    if route.rate_class:
        add(RATE_ERRORS)
    add(ALWAYS_ERRORS)
    add(op.pop("x-errors", {}))
    if params:
        op["parameters"] = params
    responses = op.setdefault("responses", {})
    header_sets = entries.get("x-header-sets", {})
    for status, response in responses.items():
        headers = response.get("headers")
        if isinstance(headers, str):
            response["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in header_sets[headers]}
    for status, descriptions in errors.items():
        if status not in responses:
            responses[status] = _error_response("; ".join(descriptions), openai_shape, draining=status == "503")
    for status, response in responses.items():
        headers = response.setdefault("headers", {})
        headers["X-Request-ID"] = {"$ref": "#/components/headers/X-Request-ID"}
        if route.rate_class:
            for name in RATE_HEADERS:
                headers.setdefault(name, {"$ref": f"#/components/headers/{name}"})
        if status == "429":
            headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    op["x-bmad-auth"] = route.auth
    op["x-bmad-rate-class"] = route.rate_class
    op["x-bmad-recorded"] = route.record
    return op


def _shared_headers():
    text = {"type": "string"}
    return {
        "X-Request-ID": {"required": True, "description": "The request's id (the caller's X-Request-ID when valid)",
                         "schema": text},
        "Retry-After": {"required": True, "description": "Whole seconds to wait before retrying",
                        "schema": {"type": "string", "pattern": "^[0-9]+$"}},
        "RateLimit-Limit": {"description": "Requests allowed per window (when rate limits are on)", "schema": text},
        "RateLimit-Remaining": {"description": "Requests left in the window", "schema": text},
        "RateLimit-Reset": {"description": "Seconds until the window resets", "schema": text},
        "RateLimit-Policy": {"description": "The policy, e.g. 100;w=60", "schema": text},
    }


def build_document(routes, entries=None, *, open_mode=True, config=None):
    """The OpenAPI 3.1 document for ``routes`` (a Router's ``routes`` list)."""
    entries = copy.deepcopy(entries if entries is not None else load_entries())
    missing = missing_entries(routes, entries)
    if missing:
        raise KeyError(f"no OpenAPI entry for: {', '.join(missing)} (add them to {ENTRIES_PATH.name})")
    paths = {}
    for route in routes:
        paths.setdefault(route.template, {})[route.method.lower()] = operation(route, entries, open_mode=open_mode)
    components = entries["components"]
    components.setdefault("headers", {}).update(_shared_headers())
    components["securitySchemes"] = {"bearerKey": {"type": "http", "scheme": "bearer",
                                                   "description": "An API key from auth.api_keys or BMAD_API_KEYS"}}
    info = dict(entries["info"], version=__version__)
    document = {"openapi": OPENAPI_VERSION, "info": info, "paths": paths, "components": components}
    if not open_mode:
        document["security"] = [{"bearerKey": []}]
    _resolve_config_limits(document, config)
    return document


class OpenAPIDocument:
    """The handler for ``GET /bmad/openapi.json``: the document, built on first use from the app's routes."""

    def __init__(self):
        self._body = None

    def serve(self, req):
        """GET /bmad/openapi.json"""
        if self._body is None:
            app = req.app
            self._body = dumps(build_document(app.router.routes, open_mode=app.auth.open_mode, config=app.config))
        return Response(200, self._body)
