"""Provider status."""


def list_providers(req):
    """GET /bmad/providers: each provider's health, circuit, traffic, latency, tokens and cost."""
    return {"status": "success", "providers": req.app.llm.providers_status()}
