"""Cross-origin requests: off unless ``server.cors_origins`` lists the origins a browser may call from.

Only listed origins get ``Access-Control-Allow-Origin`` (their own value,
never ``*``); every response of a service with origins listed carries
``Vary: Origin`` so a shared cache does not hand one origin's answer to
another. A preflight (``OPTIONS`` with ``Access-Control-Request-Method``)
from a listed origin is answered 200 (empty) for a path that exists; from any other
origin it falls through to normal routing (405), which a browser treats as
a refusal.

Methods for the caller: ``CorsPolicy.from_config(origins)``, ``apply(req, router)``.
"""

from ..errors import ConfigError, MethodNotAllowed
from .request import Response

ALLOW_HEADERS = "Authorization, Content-Type, Cache-Control, X-Request-ID, X-User-ID"
EXPOSE_HEADERS = ("X-Request-ID, X-Response-Time, X-Cache, X-BMAD-Provider, X-BMAD-Attempts, Retry-After, "
                  "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy")
MAX_AGE_SECONDS = "600"
MAX_ORIGIN_CHARS = 256


class CorsPolicy:
    """The listed origins and the headers they get."""

    def __init__(self, origins):
        self.origins = frozenset(origins)

    @classmethod
    def from_config(cls, origins):
        """Validate ``server.cors_origins``: a list of ``scheme://host[:port]`` strings."""
        if not isinstance(origins, list):
            raise ConfigError("config key 'server.cors_origins' must be a list of origins like 'https://app.example.com'")
        for i, origin in enumerate(origins):
            if (not isinstance(origin, str) or not origin.startswith(("http://", "https://"))
                    or "/" in origin.split("://", 1)[1] or len(origin) > MAX_ORIGIN_CHARS):
                raise ConfigError(f"config key 'server.cors_origins[{i}]' must be an origin like "
                                  f"'https://app.example.com' (scheme, host and optional port; no path), got {origin!r}")
        return cls(origins)

    @property
    def enabled(self):
        return bool(self.origins)

    def apply(self, req, router):
        """Add the CORS headers ``req`` earns; returns the preflight Response, or None to go on routing."""
        if not self.origins:
            return None
        req.response_headers["Vary"] = "Origin"
        origin = req.headers.get("origin")
        if origin not in self.origins:
            return None
        req.response_headers["Access-Control-Allow-Origin"] = origin
        requested = req.headers.get("access-control-request-method")
        if req.method != "OPTIONS" or requested is None:
            req.response_headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
            return None
        try:
            router.match(requested, req.path)  # 404/400 for a path that does not exist propagate
            methods = requested
        except MethodNotAllowed as e:
            methods = e.headers["Allow"]
        return Response(200, b"", {"Access-Control-Allow-Methods": methods,
                                   "Access-Control-Allow-Headers": ALLOW_HEADERS,
                                   "Access-Control-Max-Age": MAX_AGE_SECONDS}, content_type="text/plain; charset=utf-8")
