"""The OpenAI-compatible endpoints: chat completions, the models list and one model."""

from ..errors import NotFound
from ..gateway.chat import parse_chat_request
from ..gateway.results import Completion
from ..http.request import Response
from ..providers.sse import replay
from .calls import call_for, run

SSE_TYPE = "text/event-stream; charset=utf-8"
# Proxies in front (nginx and friends) must pass each event on as it comes.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def chat_completions(req):
    """POST /v1/chat/completions: the OpenAI request and response shapes, streamed or not."""
    chat = parse_chat_request(req.json())
    result = run(req, call_for(req, chat))
    if isinstance(result, Completion):
        if chat.stream:  # a cached answer, replayed as the stream that would have produced it
            return Response(200, headers={**STREAM_HEADERS, **result.headers()}, content_type=SSE_TYPE,
                            stream=replay(result.body, include_usage=chat.include_usage))
        return Response(200, result.encoded(), result.headers())
    return Response(200, headers={**STREAM_HEADERS, **result.headers()}, content_type=SSE_TYPE, stream=result)


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
