"""The web interface in a real browser: Debian's Chromium driven by Python playwright.

One browser for the whole module, fresh contexts per page (so sessionStorage
is per test). Servers and fake upstreams are real, on 127.0.0.1 port 0; the
browser is barred from resolving any other host. Screenshots of every view
at 1280 and 375 px go to ``test-artifacts/ui/`` (not committed).

Tests that need the workflow engine or the provider router skip, with the
reason, when the route table does not have their routes.
"""

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.tooling import REPO_ROOT, require_module, require_tool

pytestmark = pytest.mark.slow

sync_api = require_module("playwright.sync_api")
CHROMIUM = require_tool("chromium")

from bmad.app import build_app  # noqa: E402
from bmad.config import load, load_defaults  # noqa: E402
from bmad.service import Service  # noqa: E402
from tests.fakes.upstream import FakeUpstream  # noqa: E402
from tests.support import CapturedLogger  # noqa: E402

ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
VIEWS = ("Overview", "Providers", "Analytics", "Workflows", "Tools")
# What each view shows once its data has arrived (content or an explained state).
LOADED = {
    "overview": "#overview-metrics .tile",
    "providers": "#providers-body table, #providers-body .notice",
    "analytics": "#analytics-body .tiles, #analytics-body .notice",
    "workflows": "#workflow-catalog .catalog, #workflow-catalog .notice",
    "tools": "#tool-catalog .catalog, #tool-catalog .notice",
}
XSS = "<img src=x onerror=alert(1)> and <script>alert(2)</script>"
RIGHT_KEY = "ui-test-right-key"
WAIT_MS = 15000
# WCAG 2.1 contrast of every visible text node against the first opaque background behind it:
# at least 4.5:1, or 3:1 for large text; disabled controls are exempt.
LOW_CONTRAST_JS = """() => {
  const parse = (c) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(c);
    if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
  };
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const lum = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.5) return c;
    }
    return {r: 255, g: 255, b: 255, a: 1};
  };
  const low = [];
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || seen.has(el)) continue;
    seen.add(el);
    if (!el.getClientRects().length || el.closest("[disabled], [hidden]")) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden") continue;
    const a = lum(parse(style.color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight, 10) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < needed) low.push(`${el.tagName.toLowerCase()}.${el.className} '${el.textContent.trim().slice(0, 30)}' ${ratio.toFixed(2)}`);
  }
  return low;
}"""


def _serve(data_dir, data, clock=None):
    tree = {"server": {"host": "127.0.0.1", "port": 0}, "data_dir": str(data_dir),
            "log_level": "error",
            # The page polls from one client address; these tests load it many times a minute.
            "rate_limits": {"enabled": False}}
    tree.update(data)
    extra = {"clock": clock} if clock is not None else {}
    return Service(build_app(load(environ={}, data=tree), logger=CapturedLogger("error"), environ={},
                             **extra)).start()


def _has_route(service, method, template):
    return any(r.method == method and r.template == template for r in service.app.router.routes)


def _get_json(service, path, key=None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with urllib.request.urlopen(urllib.request.Request(service.url + path, headers=headers), timeout=10) as resp:
        return json.loads(resp.read())


def _get_text(service, path):
    with urllib.request.urlopen(service.url + path, timeout=10) as resp:
        return resp.read().decode("utf-8")


def _post_json(service, path, body):
    req = urllib.request.Request(service.url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def _screenshot(page, name):
    """A full-page screenshot from the top (a sticky header would otherwise sit mid-image)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def _provider_config(up, name):
    """Config routing every model to the fake upstream ``up`` as provider ``name`` ({} before the router exists)."""
    if "providers" not in load_defaults():
        return {}
    return {"providers": [{"name": name, "type": "openai", "base_url": up.base_url, "api_key": "sk-test"}],
            "circuit_breaker": {"failure_threshold": 2, "recovery_seconds": 600},
            "health_checks": {"interval_seconds": 0}}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def upstream():
    up = FakeUpstream("openai", api_key="sk-test").start()
    up.reply = f"# Output\n\nA heading, then markup that must stay text: {XSS}\n"
    yield up
    up.stop()


@pytest.fixture(scope="module")
def server(upstream, tmp_path_factory):
    service = _serve(tmp_path_factory.mktemp("ui-data"), _provider_config(upstream, "fake-openai"))
    yield service
    service.stop(drain_seconds=2)


class Watched:
    """A page plus everything it reported: console errors, page errors, dialogs, requests."""

    def __init__(self, context):
        self.context = context
        self.page = context.new_page()
        self.console_errors = []
        self.page_errors = []
        self.dialogs = []
        self.requests = []
        self.page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda r: self.requests.append(r))

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open_view(self, name):
        self.page.click(f"#tabs a[data-view={name}]")
        self.page.wait_for_selector(f"#view-{name}:not([hidden]) :is({LOADED[name]})", timeout=WAIT_MS)

    def assert_clean(self):
        assert self.page_errors == []
        assert self.console_errors == []
        assert self.dialogs == []


@pytest.fixture
def open_page(browser):
    contexts = []

    def _open(width=1280, height=900):
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        return Watched(context)

    yield _open
    for context in contexts:
        context.close()


def test_every_view_loads_cleanly_at_desktop_and_phone_width(server, open_page):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 375):
        w = open_page(width=width, height=900 if width > 400 else 812)
        w.page.goto(server.url + "/")
        assert w.page.url == server.url + "/bmad/ui"
        assert w.page.locator("#tabs a").all_inner_texts() == list(VIEWS)
        for label in VIEWS:
            name = label.lower()
            w.open_view(name)
            assert w.page.locator("#tabs a[aria-current=page]").inner_text() == label
            overflow = w.page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{label} at {width} px is wider than the screen by {overflow} px"
            assert w.page.evaluate(LOW_CONTRAST_JS) == [], f"{label} at {width} px"
            _screenshot(w.page, f"{name}-{width}.png")
        w.assert_clean()


def test_every_control_is_labelled_and_reachable_by_keyboard(server, open_page):
    w = open_page()
    w.page.goto(server.url + "/bmad/ui#workflows")
    w.page.wait_for_selector("#workflow-catalog .catalog")
    w.page.click("#workflow-catalog button[data-id=greenfield-service]")
    w.open_view("tools")
    w.page.click("#tool-catalog button[data-id=analyst]")
    unlabelled = w.page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter(el => el.type !== 'hidden' && !el.labels?.length && !el.getAttribute('aria-label'))
        .map(el => el.id || el.name || el.outerHTML.slice(0, 80))""")
    assert unlabelled == []
    # Tab from the top of a fresh page reaches the navigation and the refresh controls.
    w.page.reload()
    w.page.wait_for_selector("#tool-catalog .catalog")
    reached = set()
    for _ in range(12):
        w.page.keyboard.press("Tab")
        reached.add(w.page.evaluate("document.activeElement.textContent.trim() || document.activeElement.id"))
    assert {"Overview", "Providers", "Analytics", "Workflows", "Tools", "Pause"} <= reached
    w.page.keyboard.press("Shift+Tab")
    w.assert_clean()


def test_overview_numbers_match_the_apis(server, open_page):
    w = open_page()
    w.page.goto(server.url + "/bmad/ui#overview")
    w.page.wait_for_selector("#overview-metrics .tile")
    w.page.click("#pause")
    assert w.page.get_attribute("#pause", "aria-pressed") == "true"
    with w.page.expect_response(lambda r: r.url.endswith("/bmad/performance")) as perf_info, \
            w.page.expect_response(lambda r: r.url.endswith("/bmad/analytics/real-time")) as rt_info, \
            w.page.expect_response(lambda r: r.url.endswith("/bmad/health")) as health_info:
        w.page.click("#refresh-now")
    stats = perf_info.value.json()["stats"]
    realtime = rt_info.value.json()["real_time_metrics"]
    health = health_info.value.json()
    expected = {
        "requests_per_minute": stats["requests_per_minute"],
        "p50_ms": stats["p50_ms"],
        "p95_ms": stats["p95_ms"],
        "cache_hit_rate": stats["cache"]["hit_rate"],
        "error_rate": realtime["error_rate_5m"],
        "active_users": realtime["active_users_5m"],
        "workflows_running": realtime["workflows_running"],
        "version": health["version"],
        "status": health["status"],
    }
    w.page.wait_for_function(
        "v => document.querySelector('[data-metric=requests_per_minute] .tile-value').dataset.value === String(v)",
        arg=expected["requests_per_minute"], timeout=WAIT_MS)
    shown = {m: w.page.get_attribute(f"[data-metric={m}] .tile-value", "data-value") for m in expected}
    for metric, value in expected.items():
        if isinstance(value, (int, float)):
            assert float(shown[metric]) == pytest.approx(value), metric
        else:
            assert shown[metric] == value, metric
    text = {m: w.page.inner_text(f"[data-metric={m}] .tile-value") for m in expected}
    assert re.fullmatch(r"[\d.]+ (ms|s)", text["p50_ms"]) and re.fullmatch(r"[\d.]+ (ms|s)", text["p95_ms"])
    assert re.fullmatch(r"[<\d.]+%", text["error_rate"]) and re.fullmatch(r"[<\d.]+%", text["cache_hit_rate"])
    assert text["version"] == health["version"]
    # Figures the page's own polling does not move agree with an independent read.
    independent = _get_json(server, "/bmad/analytics/real-time")["real_time_metrics"]
    assert float(shown["workflows_running"]) == independent["workflows_running"]
    assert float(shown["active_users"]) == independent["active_users_5m"]
    # The charts are SVG drawn by the page: one line per series once a sample exists.
    assert w.page.locator("#overview-charts svg.chart-svg path.line").count() >= 3
    w.assert_clean()


def test_analytics_figures_match_the_report_for_the_chosen_period(server, open_page):
    w = open_page()
    w.page.goto(server.url + "/bmad/ui#analytics")
    w.page.wait_for_selector("#analytics-body .tiles")
    with w.page.expect_response(lambda r: "/bmad/analytics?days=7" in r.url) as info:
        w.page.select_option("#analytics-days", "7")
    report = info.value.json()["analytics"]
    bi = report["business_intelligence"]
    assert len(bi["usage_trends"]) == 7
    points = "n => (document.querySelector('[data-chart=trend-requests] path.line')?.getAttribute('d') || '').split(/[ML]/).length - 1"
    w.page.wait_for_function(f"() => ({points})() === 7", timeout=WAIT_MS)
    for metric, value in (("dau", bi["dau"]), ("mau", bi["mau"]), ("dau_mau", bi["dau_mau_ratio"]),
                          ("requests", report["usage"]["requests"]), ("error_rate", bi["error_analysis"]["error_rate"])):
        assert float(w.page.get_attribute(f"#analytics-body [data-metric={metric}] .tile-value", "data-value")) == value
    assert w.page.locator("#analytics-body figure[data-chart]").count() == 3
    w.assert_clean()


def test_refresh_runs_every_5_seconds_and_pause_stops_it(server, open_page):
    w = open_page()
    w.page.clock.install()
    w.page.goto(server.url + "/bmad/ui#providers")
    w.page.wait_for_selector("#providers-body table, #providers-body .notice")

    def polls():
        return sum(1 for r in w.requests if r.url.endswith("/bmad/providers"))

    before = polls()
    w.page.clock.run_for(5200)
    w.page.wait_for_function("() => document.getElementById('refresh-state').textContent.includes('last updated')")
    w.page.wait_for_timeout(300)
    assert polls() == before + 1
    w.page.click("#pause")
    assert w.page.inner_text("#pause") == "Resume"
    paused_at = polls()
    w.page.clock.run_for(16000)
    w.page.wait_for_timeout(300)
    assert polls() == paused_at
    w.page.click("#pause")
    w.page.clock.run_for(5200)
    w.page.wait_for_timeout(300)
    assert polls() == paused_at + 1
    w.assert_clean()


def test_tool_input_with_markup_renders_as_text(server, open_page):
    w = open_page()
    w.page.goto(server.url + "/bmad/ui#tools")
    w.page.wait_for_selector("#tool-catalog .catalog")
    w.page.click("#tool-catalog button[data-id=analyst]")
    w.page.fill("#tool-form textarea[data-input=idea]", XSS)
    w.page.click("#tool-preview")
    w.page.wait_for_selector("#tool-result .message")
    assert XSS in w.page.inner_text("#tool-result")
    if _has_route(server, "POST", "/bmad/tools/{tool_id}/run"):
        w.page.click("#tool-form button[type=submit]")
        w.page.wait_for_selector("#tool-output", timeout=WAIT_MS)
        assert XSS in w.page.inner_text("#tool-output")  # the fake upstream echoes it back
        assert w.page.inner_text("[data-metric=provider] .tile-value") == "fake-openai"
        assert w.page.get_attribute("[data-metric=tokens] .tile-value", "data-value") == "18"
    assert w.page.locator("#view-tools img, #view-tools script").count() == 0
    w.page.wait_for_timeout(200)
    w.assert_clean()


def test_wrong_key_is_rejected_and_the_right_key_loads(open_page, tmp_path):
    service = _serve(tmp_path, {"auth": {"api_keys": [{"key": RIGHT_KEY, "user": "alice", "role": "admin"}]}})
    try:
        w = open_page()
        w.page.goto(service.url + "/bmad/ui")
        key_input = w.page.get_by_label("API key", exact=True)
        key_input.wait_for(state="visible", timeout=WAIT_MS)
        assert key_input.get_attribute("type") == "password"
        key_input.fill("not-the-key")
        w.page.click("#auth-form button[type=submit]")
        error = w.page.locator("#auth-error")
        error.wait_for(state="visible", timeout=WAIT_MS)
        assert "rejected" in error.inner_text()
        _screenshot(w.page, "auth-rejected-1280.png")
        assert w.page.evaluate("sessionStorage.getItem('bmad.apiKey')") is None
        key_input.fill(RIGHT_KEY)
        w.page.click("#auth-form button[type=submit]")
        w.page.locator("#auth").wait_for(state="hidden", timeout=WAIT_MS)
        assert w.page.evaluate("sessionStorage.getItem('bmad.apiKey')") == RIGHT_KEY
        w.page.wait_for_function(
            "() => document.querySelector('[data-metric=requests_per_minute] .tile-value')?.dataset.value !== ''",
            timeout=WAIT_MS)
        assert w.page.locator("#overview-metrics ~ .notice-error, .messages .notice").count() == 0
        w.open_view("tools")
        assert w.page.locator("#tool-catalog button[data-id=analyst]").count() == 1
        sent = {r.headers.get("authorization") for r in w.requests if "/bmad/tools" in r.url}
        assert f"Bearer {RIGHT_KEY}" in sent
        assert w.page_errors == [] and w.dialogs == []
        # The only console errors are the browser's notes about the 401s.
        assert all("401" in text for text in w.console_errors), w.console_errors
    finally:
        service.stop(drain_seconds=2)


def test_greenfield_service_from_the_form_runs_to_readable_artifacts(server, upstream, open_page):
    if not _has_route(server, "POST", "/bmad/workflows/{workflow_id}/runs"):
        pytest.skip("the workflow engine is not installed: no POST /bmad/workflows/{workflow_id}/runs route")
    w = open_page()
    w.page.goto(server.url + "/bmad/ui#workflows")
    w.page.wait_for_selector("#workflow-catalog .catalog")
    w.page.click("#workflow-catalog button[data-id=greenfield-service]")
    w.page.fill("#workflow-form textarea[data-input=idea]", f"A pet-sitting marketplace API {XSS}")
    w.page.fill("#workflow-form input[name=title]", "ui test run")
    w.page.click("#workflow-form button[type=submit]")
    w.page.wait_for_selector("#run-view section[data-run]", timeout=WAIT_MS)
    seen_states = set()
    for _ in range(60):  # watch the steps change until the run ends (bounded: ~30 s)
        seen_states |= set(w.page.eval_on_selector_all("#run-view tr[data-step]", "rows => rows.map(r => r.dataset.state)"))
        if w.page.get_attribute("#run-view section[data-run]", "data-state") in ("succeeded", "failed", "cancelled"):
            break
        w.page.wait_for_timeout(500)
    run_id = w.page.get_attribute("#run-view section[data-run]", "data-run")
    assert w.page.get_attribute("#run-view section[data-run]", "data-state") == "succeeded"
    steps = w.page.eval_on_selector_all("#run-view tr[data-step]", "rows => rows.map(r => [r.dataset.step, r.dataset.state])")
    assert [s for s, _ in steps] == ["brief", "prd", "architecture", "validation", "stories"]
    assert {state for _, state in steps} == {"succeeded"}
    assert w.page.locator("#run-view .badge.step-state", has_text="succeeded").count() == 5
    run = _get_json(server, f"/bmad/runs/{run_id}")["run"]
    w.page.wait_for_function("n => document.querySelectorAll('#run-view details[data-artifact] .markdown').length === n",
                             arg=len(run["artifacts"]), timeout=WAIT_MS)
    for artifact in run["artifacts"]:
        text = _get_text(server, f"/bmad/runs/{run_id}/artifacts/{artifact['name']}")
        shown = w.page.locator(f"#run-view details[data-artifact='{artifact['name']}'] .markdown")
        assert shown.locator("h1").first.inner_text() == "Output"  # rendered, not raw Markdown
        assert XSS in shown.text_content() and "# Output" not in shown.text_content()
        assert text.startswith("# Output")
    assert w.page.locator("#run-view img, #run-view script").count() == 0
    _screenshot(w.page, "workflows-run-1280.png")
    # The run list shows it, and the state filter narrows to it.
    w.page.wait_for_selector(f"#run-list tr[data-run='{run_id}']", timeout=WAIT_MS)
    w.page.select_option("#runs-filter-state", "failed")
    w.page.click("#runs-filters button[type=submit]")
    w.page.wait_for_selector(f"#run-list tr[data-run='{run_id}']", state="detached", timeout=WAIT_MS)
    assert w.page.locator("#run-approve").is_disabled() and w.page.locator("#run-cancel").is_disabled()
    w.assert_clean()


def test_approve_and_cancel_buttons_drive_a_gated_run(server, open_page):
    if not _has_route(server, "POST", "/bmad/runs/{run_id}/approve"):
        pytest.skip("the workflow engine is not installed: no POST /bmad/runs/{run_id}/approve route")
    w = open_page()
    w.page.goto(server.url + "/bmad/ui#workflows")
    w.page.wait_for_selector("#workflow-catalog .catalog")
    w.page.click("#workflow-catalog button[data-id=greenfield-service]")
    w.page.fill("#workflow-form textarea[data-input=idea]", "A gated run")
    w.page.check("#workflow-form input[name=approvals]")
    run = "#run-view section[data-run]"
    finished = []
    for action, final in (("#run-approve", "succeeded"), ("#run-cancel", "cancelled")):
        w.page.click("#workflow-form button[type=submit]")
        w.page.wait_for_selector(f"{run}[data-state=waiting_approval]", timeout=WAIT_MS)
        states = dict(w.page.eval_on_selector_all("#run-view tr[data-step]", "rows => rows.map(r => [r.dataset.step, r.dataset.state])"))
        assert states["brief"] == states["prd"] == "succeeded" and states["stories"] == "pending"
        assert w.page.locator("#run-view .badge.run-state").inner_text() == "waiting for approval"
        assert w.page.locator("#run-approve").is_enabled() and w.page.locator("#run-cancel").is_enabled()
        w.page.click(action)
        w.page.wait_for_selector(f"{run}[data-state={final}]", timeout=WAIT_MS)
        assert w.page.locator("#run-approve").is_disabled()
        finished.append(w.page.get_attribute(run, "data-run"))
    # Choosing an earlier run in the list shows that run.
    w.page.click(f"#run-list tr[data-run='{finished[0]}'] a")
    w.page.wait_for_selector(f"#run-view section[data-run='{finished[0]}'][data-state=succeeded]", timeout=WAIT_MS)
    w.assert_clean()


def test_failing_provider_shows_circuit_open_after_the_next_refresh(open_page, tmp_path):
    probe = _serve(tmp_path / "probe", {})
    has_router = _has_route(probe, "GET", "/bmad/providers") and _has_route(probe, "POST", "/v1/chat/completions")
    probe.stop(drain_seconds=1)
    if not has_router:
        pytest.skip("the provider router is not installed: no /bmad/providers or /v1/chat/completions route")
    with FakeUpstream("openai", api_key="sk-test") as up:
        service = _serve(tmp_path / "flaky", _provider_config(up, "flaky-openai"))
        try:
            w = open_page()
            w.page.clock.install()
            w.page.goto(service.url + "/bmad/ui#providers")
            row = w.page.locator("#providers-body tr[data-provider=flaky-openai]")
            row.wait_for(timeout=WAIT_MS)
            assert row.get_attribute("data-circuit") == "closed"
            up.fault("status", status=500)
            for _ in range(5):
                _post_json(service, "/v1/chat/completions",
                           {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
                states = {p["name"]: p["circuit_state"] for p in _get_json(service, "/bmad/providers")["providers"]}
                if states["flaky-openai"] == "open":
                    break
            assert states["flaky-openai"] == "open"
            assert row.get_attribute("data-circuit") == "closed"  # not until the page refreshes
            w.page.clock.run_for(5200)
            w.page.wait_for_function(
                "() => document.querySelector('#providers-body tr[data-provider=flaky-openai]')?.dataset.circuit === 'open'",
                timeout=WAIT_MS)
            assert row.locator(".badge.circuit").inner_text() == "open"
            assert w.page.locator("#providers-body .notice-warn").count() == 1
            _screenshot(w.page, "providers-circuit-open-1280.png")
            w.assert_clean()
        finally:
            service.stop(drain_seconds=2)
            up.clear_faults()


# --- server-side history, Markdown artifacts, deep links, the cache directive ------------------

MARKDOWN = ("# Brief\n\nSome **bold** and *soft* words, `code`, a [safe link](https://example.org/x) and a "
            "[bad one](javascript:alert(3)).\n\n- one\n- two\n  - nested\n\n1. first\n2. second\n\n> quoted\n\n"
            "| a | b |\n|---|---|\n| 1 | 2 |\n\n```\n<b>not bold</b>\n```\n\n" + XSS + "\n")


def _start_run(service, workflow="greenfield-service", **body):
    req = urllib.request.Request(service.url + f"/bmad/workflows/{workflow}/runs", method="POST",
                                 data=json.dumps(dict(body, inputs={"idea": "a linked run"})).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["run_id"]


def _finished_run(service, run_id):
    for _ in range(10):  # each long-poll waits up to 5 s
        run = _get_json(service, f"/bmad/runs/{run_id}?wait=5")["run"]
        if run["state"] in ("succeeded", "failed", "cancelled"):
            return run
    raise AssertionError(f"run {run_id} did not finish")


def test_overview_charts_show_the_servers_last_15_minutes_on_first_load(open_page, tmp_path):
    from tests.support import FakeClock
    clock = FakeClock(start=1_699_999_980.0)
    service = _serve(tmp_path, {}, clock=clock)
    try:
        for minute in range(6):  # six minutes of traffic before any page is open
            for _ in range(minute + 1):
                _get_json(service, "/bmad/tools")
            clock.tick(60)
        w = open_page()  # a fresh context: nothing sampled, nothing in session storage
        with w.page.expect_response(lambda r: r.url.endswith("/bmad/performance")) as perf_info:
            w.page.goto(service.url + "/bmad/ui#overview")
        points = perf_info.value.json()["stats"]["history"]["points"]
        assert len(points) == 13 and sum(p["requests"] for p in points) == 21
        line = w.page.locator("#overview-charts [data-chart=rpm] path.line")
        line.wait_for(timeout=WAIT_MS)
        assert line.get_attribute("d").count("L") + 1 == len(points)  # one vertex per server point
        assert w.page.locator("#overview-charts [data-chart=latency] path.line").count() == 2
        assert w.page.evaluate("sessionStorage.length") == 0
        # The console's own files are not requests: loading it changed nothing in the figures.
        stats = _get_json(service, "/bmad/performance")["stats"]
        assert not [r for r in stats["by_route"] if r.startswith("/bmad/ui")]
        w.assert_clean()
    finally:
        service.stop(drain_seconds=2)


def test_runs_and_tools_have_links_that_open_them(server, open_page):
    if not _has_route(server, "POST", "/bmad/workflows/{workflow_id}/runs"):
        pytest.skip("the workflow engine is not installed: no POST /bmad/workflows/{workflow_id}/runs route")
    run_id = _finished_run(server, _start_run(server))["run_id"]
    w = open_page()
    w.page.goto(server.url + f"/bmad/ui#/runs/{run_id}")
    w.page.wait_for_selector(f"#run-view section[data-run='{run_id}']", timeout=WAIT_MS)
    assert w.page.locator("#tabs a[aria-current=page]").inner_text() == "Workflows"
    assert w.page.get_attribute("#run-link", "href") == f"#/runs/{run_id}"
    w.page.goto(server.url + "/bmad/ui#/tools/analyst")
    w.page.wait_for_selector("#tool-form[data-tool=analyst]", timeout=WAIT_MS)
    assert w.page.locator("#tabs a[aria-current=page]").inner_text() == "Tools"
    other = [t for t in w.page.eval_on_selector_all("#tool-catalog button[data-id]", "bs => bs.map(b => b.dataset.id)")
             if t != "analyst"][0]
    w.page.click(f"#tool-catalog button[data-id={other}]")
    assert w.page.evaluate("location.hash") == f"#/tools/{other}"
    w.page.go_back()
    w.page.wait_for_selector("#tool-form[data-tool=analyst]", timeout=WAIT_MS)
    # A fresh page opened on a tool's link shows that tool.
    fresh = open_page()
    fresh.page.goto(server.url + f"/bmad/ui#/tools/{other}")
    fresh.page.wait_for_selector(f"#tool-form[data-tool={other}]", timeout=WAIT_MS)
    # The run list links each run.
    w.open_view("workflows")
    w.page.click(f"#run-list tr[data-run='{run_id}'] a")
    w.page.wait_for_selector(f"#run-view section[data-run='{run_id}']", timeout=WAIT_MS)
    assert w.page.evaluate("location.hash") == f"#/runs/{run_id}"
    w.assert_clean()
    fresh.assert_clean()


def test_artifacts_render_as_safe_markdown_with_downloads(open_page, tmp_path):
    import zipfile
    with FakeUpstream("openai", api_key="sk-test") as up:
        up.reply = MARKDOWN
        service = _serve(tmp_path, _provider_config(up, "md-openai"))
        try:
            run = _finished_run(service, _start_run(service))
            assert run["state"] == "succeeded"
            w = open_page()
            w.page.goto(service.url + f"/bmad/ui#/runs/{run['run_id']}")
            first = run["artifacts"][0]["name"]
            doc = w.page.locator(f"#run-view details[data-artifact='{first}'] .markdown")
            doc.locator("h1").wait_for(timeout=WAIT_MS)
            assert doc.locator("h1").inner_text() == "Brief"
            assert doc.locator("strong").inner_text() == "bold" and doc.locator("em").inner_text() == "soft"
            assert doc.locator("p code").inner_text() == "code"
            assert doc.locator("a").count() == 1
            assert doc.locator("a").get_attribute("href") == "https://example.org/x"
            assert "noopener" in doc.locator("a").get_attribute("rel")
            assert "bad one" in doc.inner_text()  # the javascript: link is text, not a link
            assert doc.locator("ul > li").count() == 3 and doc.locator("ul ul li").inner_text() == "nested"
            assert doc.locator("ol > li").all_inner_texts() == ["first", "second"]
            assert doc.locator("blockquote").inner_text() == "quoted"
            assert doc.locator("table td").all_inner_texts() == ["1", "2"]
            assert doc.locator("pre code").inner_text() == "<b>not bold</b>"
            assert XSS in doc.inner_text()
            assert w.page.locator("#run-view img, #run-view script, #run-view b, #run-view [onerror]").count() == 0
            with w.page.expect_download() as one:
                w.page.click(f"#run-view button[data-download='{first}']")
            assert one.value.suggested_filename == f"{first}.md"
            assert Path(one.value.path()).read_text("utf-8") == MARKDOWN
            with w.page.expect_download() as every:
                w.page.click("#run-artifacts-zip")
            assert every.value.suggested_filename == f"{run['run_id']}-artifacts.zip"
            with zipfile.ZipFile(every.value.path()) as archive:
                assert archive.namelist() == [f"{run['run_id']}/{a['name']}.md" for a in run["artifacts"]]
                assert {archive.read(n).decode() for n in archive.namelist()} == {MARKDOWN}
            # Unmatched markers by the ten thousand render in linear time (the artifact limit is 200,000 characters).
            for text in ("_x " * 60000, "* a " * 50000, "[a](" * 40000):
                ms = w.page.evaluate("""async (t) => { const m = await import('/bmad/ui/markdown.js');
                    const s = performance.now(); m.renderMarkdown(t); return performance.now() - s; }""", text)
                assert ms < 2000, (text[:8], ms)
            _screenshot(w.page, "workflows-markdown-1280.png")
            w.assert_clean()
        finally:
            service.stop(drain_seconds=2)


def test_the_console_sends_no_cache_directive_unless_asked_for_a_fresh_answer(open_page, tmp_path):
    with FakeUpstream("openai", api_key="sk-test") as up:
        service = _serve(tmp_path, _provider_config(up, "cached-openai"))
        try:
            if not _has_route(service, "POST", "/bmad/tools/{tool_id}/run"):
                pytest.skip("no tool-run route in this build")
            w = open_page()
            w.page.goto(service.url + "/bmad/ui#tools")
            w.page.click("#tool-catalog button[data-id=analyst]")
            w.page.fill("#tool-form textarea[data-input=idea]", "the same question twice")
            answers = []
            for fresh in (False, False, True):
                if fresh:
                    w.page.check("#tool-fresh")
                with w.page.expect_response(lambda r: r.url.endswith("/bmad/tools/analyst/run")) as info:
                    w.page.click("#tool-form button[type=submit]")
                w.page.wait_for_selector("#tool-output", timeout=WAIT_MS)
                sent = info.value.request.all_headers()
                answers.append((sent.get("cache-control"), sent.get("pragma"), info.value.header_value("x-cache")))
                if not fresh:
                    assert answers[-1][:2] == (None, None), answers  # no directive of its own
            assert answers == [(None, None, "MISS"), (None, None, "HIT"), ("no-cache", None, "MISS")]
            assert sum(r.route == "chat" for r in up.requests) == 2  # the second run was the cache's
            gets = [r for r in w.requests if r.method == "GET" and "/bmad/" in r.url and "/bmad/ui" not in r.url]
            assert gets and all("cache-control" not in r.all_headers() for r in gets)
            w.assert_clean()
        finally:
            service.stop(drain_seconds=2)


def test_analytics_shows_cancelled_runs_apart_from_failures(open_page, tmp_path):
    import time
    service = _serve(tmp_path, {})
    try:
        assert _finished_run(service, _start_run(service))["state"] == "succeeded"
        gated = _start_run(service, approvals=True)
        assert _get_json(service, f"/bmad/runs/{gated}?wait=20")["run"]["state"] == "waiting_approval"
        assert _post_json(service, f"/bmad/runs/{gated}/cancel", {}) == 200
        deadline = time.monotonic() + 10
        while _get_json(service, "/bmad/analytics")["analytics"]["workflows"]["cancelled"] != 1:
            assert time.monotonic() < deadline, "the cancel never reached analytics"
            time.sleep(0.1)
        w = open_page()
        w.page.goto(service.url + "/bmad/ui#analytics")
        row = w.page.locator("#analytics-body tr", has_text="greenfield-service")
        row.wait_for(timeout=WAIT_MS)
        cell = lambda label: row.locator(f"td[data-label='{label}']").inner_text()  # noqa: E731
        assert (cell("Succeeded"), cell("Failed"), cell("Cancelled"), cell("Success rate")) == ("1", "0", "1", "100%")
        w.assert_clean()
    finally:
        service.stop(drain_seconds=2)


def test_a_user_key_sees_provider_health_and_its_own_usage(open_page, tmp_path):
    service = _serve(tmp_path, {"auth": {"api_keys": [{"key": RIGHT_KEY, "user": "alice"}]}})
    try:
        w = open_page()
        w.context.add_init_script(f"sessionStorage.setItem('bmad.apiKey', {json.dumps(RIGHT_KEY)})")
        w.page.goto(service.url + "/bmad/ui#providers")
        row = w.page.locator("#providers-body tr[data-provider=offline]")
        row.wait_for(timeout=WAIT_MS)
        assert row.get_attribute("data-circuit") == "closed"
        assert w.page.locator("#providers-body .notice", has_text="Your usage only").count() == 1
        headers = w.page.locator("#providers-body th").all_inner_texts()
        assert "Your requests" in headers and "Success" not in headers and "Cost" not in headers
        assert w.page_errors == [] and w.dialogs == []
    finally:
        service.stop(drain_seconds=2)
