"""The web interface's static files: content types, validators, security headers, no traversal."""

import re
from pathlib import Path

import pytest

UI_DIR = Path(__file__).resolve().parent.parent / "bmad" / "ui"

SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@pytest.fixture
def ui(start_app, client_for):
    return client_for(start_app())


def assert_security_headers(resp):
    csp = resp.getheader("Content-Security-Policy")
    assert csp and csp.split(";")[0].strip() == "default-src 'self'"
    for name, value in SECURITY.items():
        assert resp.getheader(name) == value, name


@pytest.mark.parametrize("path, ctype", [
    ("/bmad/ui", "text/html; charset=utf-8"),
    ("/bmad/ui/", "text/html; charset=utf-8"),
    ("/bmad/ui/index.html", "text/html; charset=utf-8"),
    ("/bmad/ui/app.js", "text/javascript; charset=utf-8"),
    ("/bmad/ui/style.css", "text/css; charset=utf-8"),
    ("/bmad/ui/favicon.svg", "image/svg+xml"),
])
def test_files_are_served_with_their_type_and_security_headers(ui, path, ctype):
    resp = ui.get(path)
    assert resp.status == 200
    assert resp.getheader("Content-Type") == ctype
    assert_security_headers(resp)
    assert resp.getheader("ETag")
    assert resp.getheader("Cache-Control")
    name = path.rsplit("/", 1)[1] if path.count("/") > 2 and not path.endswith("/") else "index.html"
    assert resp.body == (UI_DIR / name).read_bytes()


def test_every_file_in_the_ui_folder_is_served(ui):
    for path in UI_DIR.iterdir():
        resp = ui.get(f"/bmad/ui/{path.name}")
        assert resp.status == 200, path.name
        assert int(resp.getheader("Content-Length")) == path.stat().st_size


def test_etag_gives_304_on_if_none_match(ui):
    first = ui.get("/bmad/ui/app.js")
    etag = first.getheader("ETag")
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    for given in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        again = ui.get("/bmad/ui/app.js", headers={"If-None-Match": given})
        assert again.status == 304, given
        assert again.body == b""
        assert again.getheader("ETag") == etag
        assert again.getheader("Cache-Control") == first.getheader("Cache-Control")
        assert_security_headers(again)
    stale = ui.get("/bmad/ui/app.js", headers={"If-None-Match": '"0000"'})
    assert stale.status == 200 and stale.body == first.body


def test_html_is_revalidated_and_assets_cached_briefly(ui):
    assert ui.get("/bmad/ui").getheader("Cache-Control") == "no-cache"
    assert "max-age=" in ui.get("/bmad/ui/style.css").getheader("Cache-Control")


def test_head_answers_headers_only(ui):
    resp = ui.request("HEAD", "/bmad/ui/style.css")
    assert resp.status == 200
    assert resp.body == b""
    assert int(resp.getheader("Content-Length")) == (UI_DIR / "style.css").stat().st_size


@pytest.mark.parametrize("path", [
    "/bmad/ui/..%2f..%2fbmad_api.py",
    "/bmad/ui/..%2F..%2Fsetup.cfg",
    "/bmad/ui/../../setup.cfg",
    "/bmad/ui/%2e%2e/%2e%2e/setup.cfg",
    "/bmad/ui/..%5c..%5csetup.cfg",
    "/bmad/ui/%2fetc%2fpasswd",
    "/bmad/ui//etc/passwd",
    "/bmad/ui/app.js%00.html",
    "/bmad/ui/nope.js",
    "/bmad/ui/app.js/",
    "/bmad/ui/APP.JS",
    "/bmad/ui/.hidden",
    "/bmad/ui/../handlers/ui.py",
])
def test_traversal_and_unknown_files_are_404(ui, path):
    resp = ui.get(path)
    assert resp.status == 404, path
    assert b"import" not in resp.body and b"[metadata]" not in resp.body and b"root:" not in resp.body


def test_root_redirects_to_the_ui(ui):
    resp = ui.get("/")
    assert resp.status in (302, 308)
    assert resp.getheader("Location") == "/bmad/ui"


def test_ui_routes_are_open_unlimited_and_not_recorded(start_app, client_for):
    service = start_app(data={"auth": {"api_keys": [{"key": "k-1", "user": "alice"}]}})
    routes = [r for r in service.app.router.routes if r.template == "/" or r.template.startswith("/bmad/ui")]
    assert {r.template for r in routes} >= {"/", "/bmad/ui", "/bmad/ui/", "/bmad/ui/app.js"}
    for route in routes:
        assert (route.auth, route.rate_class, route.record) == ("open", None, False), route.template
        assert "{" not in route.template
    c = client_for(service)
    assert c.get("/bmad/ui").status == 200  # no key needed for the page itself
    for _ in range(150):  # more than the api class allows in a minute
        assert c.get("/bmad/ui/style.css").status == 200
    assert c.get("/bmad/tools").status == 401


def test_no_markup_injection_or_inline_code_in_the_ui():
    """Every server-provided string goes in as text; CSP forbids inline scripts and styles anyway."""
    for path in UI_DIR.glob("*.js"):
        source = path.read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in source, f"{path.name} uses {sink}"
    html = (UI_DIR / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
