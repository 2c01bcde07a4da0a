"""Analytics endpoints: the aggregate report, real-time metrics and per-user/workflow/provider reports.

Access: the routes for aggregate figures need an admin key (the route table
says so); a user may read their own user report and an admin anyone's.
``?days=N`` is a whole number from 1 to ``analytics.retention_days``.
"""

import re

from ..errors import BadRequest, Forbidden, NotFound, ServiceUnavailable

DEFAULT_DAYS = 30
DAYS = re.compile(r"[0-9]{1,6}\Z")


def _engine(req):
    engine = getattr(req.app, "analytics", None)
    if engine is None:
        raise ServiceUnavailable("analytics is disabled (config key 'analytics.enabled' is false)",
                                 type="analytics_disabled")
    return engine


def _days(req, engine):
    limit = engine.retention_days
    raw = req.query.get("days")
    if raw is None:
        return min(DEFAULT_DAYS, limit)
    days = int(raw) if DAYS.match(raw) else 0
    if not 1 <= days <= limit:
        raise BadRequest(f"query parameter 'days' must be a whole number from 1 to {limit}, got {raw[:32]!r}",
                         param="days", type="invalid_days")
    return days


def configured_providers(app):
    """Names of the configured LLM providers.

    Asks the router (``app.llm``) when it is there: its ``provider_names()``,
    else its ``providers`` (a dict by name, or objects with ``.name``); else
    the ``providers`` config entries; else the built-in ``offline`` provider.
    """
    llm = getattr(app, "llm", None)
    if llm is not None:
        names = getattr(llm, "provider_names", None)
        if callable(names):
            return set(names())
        providers = getattr(llm, "providers", None)
        if isinstance(providers, dict):
            return set(providers)
        if providers is not None:
            return {getattr(p, "name", None) for p in providers}
    entries = app.config.get("providers") or []
    names = {e.get("name") for e in entries if isinstance(e, dict)}
    return names or {"offline"}


def overview(req):
    """GET /bmad/analytics"""
    engine = _engine(req)
    return {"status": "success", "analytics": engine.overview(_days(req, engine))}


def real_time(req):
    """GET /bmad/analytics/real-time"""
    return {"status": "success", "real_time_metrics": _engine(req).real_time()}


def user(req):
    """GET /bmad/analytics/user/{user_id}: own report, or anyone's for an admin."""
    engine = _engine(req)
    user_id = req.params["user_id"]
    principal = req.principal
    if not (principal.is_admin or principal.user == user_id):
        raise Forbidden("a user may read only their own analytics; other users' need an admin key")
    report = engine.user(user_id, _days(req, engine))
    if report is None:
        raise NotFound(f"no analytics for user '{user_id}': never seen", type="user_not_found")
    return {"status": "success", "user": report}


def workflow(req):
    """GET /bmad/analytics/workflow/{workflow_name}"""
    engine = _engine(req)
    name = req.params["workflow_name"]
    definition = req.app.catalog.workflows.get(name)
    if definition is None:
        raise NotFound(f"unknown workflow '{name}'", type="workflow_not_found")
    step_order = [step["id"] for step in definition["steps"]]
    return {"status": "success", "workflow": engine.workflow(name, _days(req, engine), step_order)}


def provider(req):
    """GET /bmad/analytics/provider/{provider_name}"""
    engine = _engine(req)
    name = req.params["provider_name"]
    if name not in configured_providers(req.app):
        raise NotFound(f"unknown provider '{name}': not configured", type="provider_not_found")
    return {"status": "success", "provider": engine.provider(name, _days(req, engine))}
