"""Provider status.

Every authenticated caller may see each provider's health and circuit state;
the shared traffic, token and cost figures are an admin's. A user sees their
own usage of each provider instead (over the last ``OWN_SECONDS``, from
analytics, so it lags by the analytics flush interval).
"""

OWN_SECONDS = 86400
# What every caller may see of a provider: whether and why it is (not) being used.
PUBLIC_FIELDS = ("name", "type", "models", "healthy", "circuit_state", "last_check", "last_error")
OWN_ZERO = {"requests": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}


def own_usage(req, seconds):
    """The caller's own figures over the last ``seconds``, or None when analytics is off."""
    engine = getattr(req.app, "analytics", None)
    return engine.own_usage(req.user, seconds) if engine is not None else None


def list_providers(req):
    """GET /bmad/providers: health and circuit of each provider; traffic, tokens and cost for admins."""
    providers = req.app.llm.providers_status()
    if req.principal.is_admin:
        return {"status": "success", "scope": "all", "providers": providers}
    own = own_usage(req, OWN_SECONDS)
    visible = []
    for entry in providers:
        entry = {name: entry.get(name) for name in PUBLIC_FIELDS}
        if own is not None:
            entry["your_usage"] = own["providers"].get(entry["name"], OWN_ZERO)
        visible.append(entry)
    return {"status": "success", "scope": "own", "user": req.user, "window_seconds": OWN_SECONDS,
            "providers": visible}
