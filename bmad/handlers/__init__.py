"""HTTP handlers: plain functions ``handler(request) -> Response | dict``.

They read the request, call a service on ``request.app`` and shape the
answer; business logic lives in the services.
"""
