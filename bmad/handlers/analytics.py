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
    engine = req.app.analytics
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


def _running(req):
    return req.app.workflows.stats()["running"]


def overview(req):
    """GET /bmad/analytics"""
    engine = _engine(req)
    return {"status": "success", "analytics": engine.overview(_days(req, engine), _running(req))}


def real_time(req):
    """GET /bmad/analytics/real-time"""
    return {"status": "success", "real_time_metrics": _engine(req).real_time(_running(req))}


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
    if name not in req.app.llm.by_name:
        raise NotFound(f"unknown provider '{name}': not configured", type="provider_not_found")
    return {"status": "success", "provider": engine.provider(name, _days(req, engine))}
