"""Catalog endpoints: tools, workflows and prompt previews."""

from ..catalog.prompts import run_messages
from ..http.request import json_response


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
    answer, result = req.app.completions.run_tool(req.params["tool_id"], req.json(), req.principal,
                                                  request_id=req.request_id)
    return json_response(answer, headers=result.headers())
