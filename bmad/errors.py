"""One exception tree for every error the service answers with.

An ``HTTPError`` carries the status, a machine-readable ``type`` and a message
that names what was wrong. Handlers raise it from any depth; the connection
handler turns it into the JSON error body (or the OpenAI error shape on /v1).
"""


class HTTPError(Exception):
    """An error answered to the client with ``status`` and a JSON body."""

    status = 500
    type = "internal_error"

    def __init__(self, message, *, type=None, headers=None, param=None, code=None, close=False):
        super().__init__(message)
        self.message = message
        if type is not None:
            self.type = type
        self.headers = dict(headers or {})
        self.param = param
        self.code = code
        self.close = close


class BadRequest(HTTPError):
    status = 400
    type = "invalid_request"


class Unauthorized(HTTPError):
    status = 401
    type = "unauthorized"


class Forbidden(HTTPError):
    status = 403
    type = "forbidden"


class NotFound(HTTPError):
    status = 404
    type = "not_found"


class MethodNotAllowed(HTTPError):
    status = 405
    type = "method_not_allowed"

    def __init__(self, method, allow):
        super().__init__(f"method {method} is not allowed here; allowed: {', '.join(allow)}",
                         headers={"Allow": ", ".join(allow)})


class LengthRequired(HTTPError):
    status = 411
    type = "length_required"


class PayloadTooLarge(HTTPError):
    status = 413
    type = "payload_too_large"


class URITooLong(HTTPError):
    status = 414
    type = "uri_too_long"


class UnsupportedMediaType(HTTPError):
    status = 415
    type = "unsupported_media_type"


class TooManyRequests(HTTPError):
    status = 429
    type = "rate_limited"


class HeadersTooLarge(HTTPError):
    status = 431
    type = "headers_too_large"


class InternalError(HTTPError):
    status = 500
    type = "internal_error"


class NotImplementedYet(HTTPError):
    status = 501
    type = "not_implemented"


class BadGateway(HTTPError):
    status = 502
    type = "bad_gateway"


class ServiceUnavailable(HTTPError):
    status = 503
    type = "service_unavailable"


class GatewayTimeout(HTTPError):
    status = 504
    type = "gateway_timeout"


class VersionNotSupported(HTTPError):
    status = 505
    type = "http_version_not_supported"


class ConfigError(Exception):
    """The configuration is invalid; the message names the key or file."""
