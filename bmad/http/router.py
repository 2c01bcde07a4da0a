"""The route table: method + path template -> handler and its policies.

Contract: ``match(method, path)`` returns ``(route, params)`` or raises
404 (no such path) / 405 (path known, method not; with ``Allow``) / 400 (a
path parameter that cannot be an id).
"""

from urllib.parse import unquote

from ..errors import BadRequest, MethodNotAllowed, NotFound

MAX_PARAM_CHARS = 256


class Route:
    """One entry of the route table and the policies that apply to it.

    ``auth``: ``open`` (no key needed), ``user`` or ``admin``.
    ``rate_class``: the rate-limit class (``api``, ``provider``, ``workflow``) or None.
    ``record``: whether analytics records the request as ``api_request``.
    The error shape follows the path (``/v1/`` routes answer OpenAI's).
    """

    __slots__ = ("method", "template", "handler", "auth", "rate_class", "record", "segments")

    def __init__(self, method, template, handler, *, auth="user", rate_class="api", record=True):
        self.method = method
        self.template = template
        self.handler = handler
        self.auth = auth
        self.rate_class = rate_class
        self.record = record
        self.segments = template.strip("/").split("/")

    def bind(self, parts):
        """Return the path parameters when ``parts`` fit this template, else None."""
        if len(parts) != len(self.segments):
            return None
        params = {}
        for seg, part in zip(self.segments, parts):
            if seg.startswith("{"):
                if not part:
                    return None
                params[seg[1:-1]] = part
            elif seg != part:
                return None
        return params


class Router:
    """Matches requests to routes; exact paths by dict lookup, templates by segment."""

    def __init__(self):
        self.routes = []
        self._static = {}
        self._dynamic = []

    def add(self, method, template, handler, **policy):
        """Register ``handler`` for ``method`` on ``template``."""
        route = Route(method, template, handler, **policy)
        self.routes.append(route)
        if "{" in template:
            self._dynamic.append(route)
        else:
            self._static.setdefault(template, {})[method] = route
        return route

    def get(self, template, handler, **policy):
        return self.add("GET", template, handler, **policy)

    def post(self, template, handler, **policy):
        return self.add("POST", template, handler, **policy)

    def match(self, method, path):
        """Return ``(route, params)`` or raise 404/405/400."""
        lookup = "GET" if method == "HEAD" else method
        by_method = self._static.get(path)
        if by_method is not None:
            route = by_method.get(lookup)
            if route is not None:
                return route, {}
            raise MethodNotAllowed(method, _allow(by_method))
        parts = path.strip("/").split("/")
        allowed = {}
        for route in self._dynamic:
            params = route.bind(parts)
            if params is None:
                continue
            if route.method == lookup:
                return route, _decode(params)
            allowed[route.method] = route
        if allowed:
            raise MethodNotAllowed(method, _allow(allowed))
        raise NotFound(f"no route for {path[:200]}")


def _allow(by_method):
    methods = set(by_method)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def _decode(params):
    for name, raw in params.items():
        try:
            value = unquote(raw, errors="strict") if "%" in raw else raw
        except UnicodeDecodeError:
            raise BadRequest(f"path parameter '{name}' is not valid UTF-8") from None
        if len(value) > MAX_PARAM_CHARS:
            raise BadRequest(f"path parameter '{name}' is longer than {MAX_PARAM_CHARS} characters")
        if any(ord(ch) < 32 or ch in "/\\" for ch in value):
            raise BadRequest(f"path parameter '{name}' contains a character it cannot have")
        params[name] = value
    return params
