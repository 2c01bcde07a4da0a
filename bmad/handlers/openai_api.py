"""The OpenAI-compatible endpoints: chat completions, the models list and one model."""

from ..errors import NotFound
from ..gateway.completions import parse_chat_request
from ..http.request import Response, dumps

SSE_TYPE = "text/event-stream; charset=utf-8"
# Proxies in front (nginx and friends) must pass each event on as it comes.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def chat_completions(req):
    """POST /v1/chat/completions: the OpenAI request and response shapes, streamed or not."""
    # A wrapper that already parsed the body (the response cache, for its key) leaves it here.
    chat = req.context.get("chat_request") or parse_chat_request(req.json())
    completions = req.app.completions
    if chat.stream:
        stream = completions.stream(chat, req.principal, request_id=req.request_id)
        return Response(200, headers={**STREAM_HEADERS, **stream.headers()}, content_type=SSE_TYPE, stream=stream)
    result = completions.complete(chat, req.principal, request_id=req.request_id)
    return Response(200, dumps(result.body), result.headers())


def list_models(req):
    """GET /v1/models: every alias and every model a provider lists, in the OpenAI list shape."""
    created = int(req.app.started_at)
    data = [{"id": name, "object": "model", "created": created, "owned_by": owner}
            for name, owner in req.app.llm.models()]
    return {"object": "list", "data": data}


def retrieve_model(req):
    """GET /v1/models/{model_id} (and ``{model_prefix}/{model_id}`` for ids with a slash): one listed model."""
    params = req.params
    model_id = f"{params['model_prefix']}/{params['model_id']}" if "model_prefix" in params else params["model_id"]
    found = req.app.llm.model(model_id)
    if found is None:
        raise NotFound(f"model '{model_id[:200]}' is not listed here; GET /v1/models lists what is",
                       type="invalid_request_error", code="model_not_found", param="model")
    return {"id": found[0], "object": "model", "created": int(req.app.started_at), "owned_by": found[1]}
