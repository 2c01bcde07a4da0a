"""Catalog endpoints: tools, workflows and prompt previews."""

from ..catalog.prompts import run_messages
from ..gateway.caching import cache_mode
from ..http.request import json_response
from .calls import run


def list_tools(req):
    """GET /bmad/tools"""
    return {"status": "success", "tools": req.app.catalog.tool_summaries()}


def get_tool(req):
    """GET /bmad/tools/{tool_id}"""
    return {"status": "success", "tool": req.app.catalog.tool(req.params["tool_id"])}


def preview_tool(req):
    """POST /bmad/tools/{tool_id}/preview: the messages a run would send, without calling a model."""
    tool = req.app.catalog.tool(req.params["tool_id"])
    _, _, messages = run_messages(tool, req.json())
    return {"status": "success", "tool": tool["id"], "messages": messages}


def list_workflows(req):
    """GET /bmad/workflows"""
    return {"status": "success", "workflows": req.app.catalog.workflow_summaries()}


def get_workflow(req):
    """GET /bmad/workflows/{workflow_id}"""
    return {"status": "success", "workflow": req.app.catalog.workflow(req.params["workflow_id"])}


def run_tool(req):
    """POST /bmad/tools/{tool_id}/run: build the tool's messages, route them, return its output."""
    completions = req.app.completions
    tool, call = completions.tool_call(req.params["tool_id"], req.json(), principal=req.principal,
                                       request_id=req.request_id, origin=req.route.template,
                                       cache_mode=cache_mode(req.headers), rate_client=req.app.rate_limits.client(req))
    result = run(req, call)
    return json_response(completions.tool_answer(tool, result), headers=result.headers())
