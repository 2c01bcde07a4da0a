"""The route table: every endpoint the service answers, in one place."""

from . import analytics, catalog, meta, openai_api, performance, providers, runs, ui
from .openapi import OpenAPIDocument
from ..http.router import Router

OPEN = dict(auth="open", rate_class=None, record=False)


def build_routes(app):
    """Return the router with every route the configured app serves."""
    r = Router()
    r.get("/bmad/health", meta.health, **OPEN)
    r.get("/bmad/metrics", meta.metrics, **OPEN)
    r.get("/bmad/openapi.json", OpenAPIDocument().serve, **OPEN)
    r.get("/bmad/performance", performance.show)
    r.get("/bmad/providers", providers.list_providers)

    # rate_class "provider": limited per LLM call in the gateway pipeline (workflow steps share the limit).
    r.post("/v1/chat/completions", openai_api.chat_completions, rate_class="provider")
    r.get("/v1/models", openai_api.list_models)
    r.get("/v1/models/{model_id}", openai_api.retrieve_model)
    r.get("/v1/models/{model_prefix}/{model_id}", openai_api.retrieve_model)

    r.get("/bmad/tools", catalog.list_tools)
    r.get("/bmad/tools/{tool_id}", catalog.get_tool)
    r.post("/bmad/tools/{tool_id}/preview", catalog.preview_tool)
    r.post("/bmad/tools/{tool_id}/run", catalog.run_tool, rate_class="provider")
    r.get("/bmad/workflows", catalog.list_workflows)
    r.get("/bmad/workflows/{workflow_id}", catalog.get_workflow)
    r.post("/bmad/workflows/{workflow_id}/runs", runs.start_run, rate_class="workflow")
    r.get("/bmad/runs", runs.list_runs)
    r.get("/bmad/runs/{run_id}", runs.get_run)
    r.get("/bmad/runs/{run_id}/artifacts/{name}", runs.get_artifact)
    r.get("/bmad/runs/{run_id}/artifacts.zip", runs.artifacts_zip)
    r.post("/bmad/runs/{run_id}/cancel", runs.cancel_run)
    r.post("/bmad/runs/{run_id}/approve", runs.approve_run)

    r.get("/bmad/analytics", analytics.overview, auth="admin")
    r.get("/bmad/analytics/real-time", analytics.real_time, auth="admin")
    r.get("/bmad/analytics/user/{user_id}", analytics.user)
    r.get("/bmad/analytics/workflow/{workflow_name}", analytics.workflow, auth="admin")
    r.get("/bmad/analytics/provider/{provider_name}", analytics.provider, auth="admin")

    # One route per UI file (never a {path} parameter), so no request path reaches the file system.
    ui_files = ui.StaticFiles()
    r.get("/", ui_files.redirect_root, **OPEN)
    for path in ui_files.paths():
        r.get(path, ui_files.serve, **OPEN)
    return r
