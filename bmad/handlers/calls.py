"""The HTTP edge of the pipeline: a ``Call`` from a request, and its headers back onto the response."""

from ..gateway.caching import cache_mode
from ..gateway.pipeline import Call


def call_for(req, chat, **fields):
    """The pipeline ``Call`` for ``chat`` asked for by ``req`` (its user, cache directives and rate client)."""
    return Call(chat, principal=req.principal, request_id=req.request_id, origin=req.route.template,
                cache_mode=cache_mode(req.headers), rate_client=req.app.rate_limits.client(req), **fields)


def run(req, call):
    """Run ``call`` through the completion service; the plugins' headers go on whatever is answered."""
    try:
        return req.app.completions.call(call)
    finally:
        if call.headers:
            req.response_headers.update(call.headers)
