"""The web interface: static files from the package's ``ui`` folder, and the ``/`` redirect.

The files are read once, when the route table is built, into a table keyed
by file name; a request can only ever get one of those entries, so no path a
client sends (``..``, encoded slashes, absolute paths) reaches the file
system. The route table registers one route per file for the same reason.
"""

import hashlib
from pathlib import Path

from ..errors import NotFound
from ..http.request import Response

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
PREFIX = "/bmad/ui"
INDEX = "index.html"
MAX_FILE_BYTES = 2 * 1024 * 1024

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}

# The page needs nothing from anywhere else, so the policy can be this strict;
# 'self' alone also forbids inline scripts and styles.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

# The HTML is revalidated on every load so a new release is picked up at
# once; the files it names are revalidated after a minute (the ETag makes
# that a cheap 304).
CACHE_HTML = "no-cache"
CACHE_ASSET = "public, max-age=60, must-revalidate"


class StaticFile:
    """One file held in memory with its content type and strong ETag."""

    __slots__ = ("name", "body", "content_type", "etag", "cache_control")

    def __init__(self, name, body):
        self.name = name
        self.body = body
        suffix = Path(name).suffix.lower()
        self.content_type = CONTENT_TYPES.get(suffix, "application/octet-stream")
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        self.cache_control = CACHE_HTML if suffix == ".html" else CACHE_ASSET


class StaticFiles:
    """The UI folder's files, served with validators and security headers.

    Methods for the caller: ``paths()`` (every URL path to route here),
    ``serve(req)`` (the handler for those paths), ``redirect_root(req)``.
    """

    def __init__(self, directory=UI_DIR):
        self.files = {}
        folder = Path(directory)
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in CONTENT_TYPES:
                    if path.stat().st_size <= MAX_FILE_BYTES:
                        self.files[path.name] = StaticFile(path.name, path.read_bytes())

    def paths(self):
        """The URL paths this serves: the UI root, its slash form, and one per file."""
        return [PREFIX, PREFIX + "/"] + [f"{PREFIX}/{name}" for name in self.files]

    def serve(self, req):
        """GET /bmad/ui and /bmad/ui/{file}: the file, or 304 when the client's copy is current."""
        name = req.path[len(PREFIX):].lstrip("/") or INDEX
        static = self.files.get(name)
        if static is None:
            raise NotFound(f"no UI file {name[:100]!r}", type="ui_file_not_found")
        headers = dict(SECURITY_HEADERS)
        headers["ETag"] = static.etag
        headers["Cache-Control"] = static.cache_control
        if etag_matches(req.headers.get("if-none-match"), static.etag):
            return Response(304, b"", headers, content_type=static.content_type)
        return Response(200, static.body, headers, content_type=static.content_type)

    def redirect_root(self, req):
        """GET /: send browsers to the web interface."""
        headers = dict(SECURITY_HEADERS)
        headers["Location"] = PREFIX
        headers["Cache-Control"] = "no-cache"
        return Response(302, b"", headers, content_type="text/plain; charset=utf-8")


def etag_matches(header, etag):
    """RFC 9110 section 13.1.2: If-None-Match uses the weak comparison, and ``*`` matches any."""
    if not header:
        return False
    opaque = etag[2:] if etag.startswith("W/") else etag
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == opaque:
            return True
    return False
