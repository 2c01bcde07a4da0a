"""/bmad/metrics scraped from a running service by the real tools.

``promtool check metrics`` is the strict oracle for the format (exit 0 and
nothing printed); the official ``prometheus_client`` parser reads the values;
a real Prometheus server started here scrapes the service and answers PromQL.
The alert rules and the Grafana dashboard may only query names a live scrape
exports.
"""

import json
import platform
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from bmad import __version__
from bmad.ops.metrics import CONTENT_TYPE
from tests import support
from tests.tooling import (EXTERNAL_METRICS, SERVICE_METRICS, monitoring_metric_names, require_module,
                           require_tool)

TOOLS_REQUESTS = 7
UNKNOWN_TOOLS = ("x1", "x2", "x3")
RANDOM_404_PATHS = ("/nope", "/bmad/nope/deeper", "/a9f3c1", "/bmad/tools/x1/y/z", "/v1/../etc")

# Contracted names whose owning part has not landed yet. The live test below
# fails when one of them shows up in a scrape, naming it, so this set shrinks
# as the parts land and never hides a name that is already exported.
NOT_YET_EXPORTED = frozenset()  # every contracted name is exported now (issue 3 landed the provider metrics)

# Queried by the rules, but produced by Prometheus itself (up) or kube-state-metrics.
ALLOWED_EXTERNAL = frozenset({"up", "kube_pod_container_status_restarts_total"})


# --- helpers ---------------------------------------------------------------------

def scrape(client, headers=None):
    """GET /bmad/metrics on ``client``'s keep-alive connection; asserts 200 and the content type."""
    resp = client.get("/bmad/metrics", headers=headers)
    assert resp.status == 200, resp.body[:500]
    assert resp.getheader("Content-Type") == CONTENT_TYPE
    return resp.body.decode("utf-8")


def families_by_name(text):
    """Parse with the official client: {family name: Metric}."""
    parser = require_module("prometheus_client.parser")
    return {f.name: f for f in parser.text_string_to_metric_families(text)}


def sample_value(families, family, sample_name, **labels):
    """The value of the one sample of ``family`` named ``sample_name`` with exactly ``labels``."""
    matches = [s.value for s in families[family].samples if s.name == sample_name and s.labels == labels]
    assert len(matches) == 1, f"{sample_name}{labels}: {len(matches)} samples in {families[family].samples}"
    return matches[0]


def exported_names(text):
    """Every series name the exposition declares: sample names, plus each family's own names.

    A labelled family without samples yet still exports its names (its
    ``# TYPE`` line is there), and a histogram exports ``_bucket``, ``_sum``
    and ``_count``.
    """
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name + s for s in ("_bucket", "_sum", "_count")} if kind == "histogram" else {name}
        elif line and not line.startswith("#"):
            names.add(line.split("{")[0].split()[0])
    return names


def promtool_check(text):
    promtool = require_tool("promtool")
    proc = subprocess.run([promtool, "check", "metrics"], input=text.encode("utf-8"),
                          capture_output=True, timeout=30)
    return proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")


def drive(client):
    """The requests the assertions below count."""
    for _ in range(TOOLS_REQUESTS):
        assert client.get("/bmad/tools").status == 200
    for tool in UNKNOWN_TOOLS:
        assert client.get(f"/bmad/tools/{tool}").status == 404
    for path in RANDOM_404_PATHS:
        assert client.get(path).status == 404
    assert client.post("/bmad/tools", body={}).status == 405


# --- the scrape, checked by promtool and the official parser ----------------------

def test_live_scrape_passes_promtool_and_counts_what_was_driven(start_app, client_for):
    service = start_app()
    client = client_for(service)
    drive(client)
    # The same keep-alive connection: the server records a request before reading the next one.
    text = scrape(client)

    rc, output = promtool_check(text)
    assert (rc, output) == (0, ""), f"promtool check metrics:\n{output}"

    fams = families_by_name(text)
    requests = "bmad_http_requests_total"
    family = "bmad_http_requests"  # the parser names a counter family without _total
    assert sample_value(fams, family, requests, method="GET", route="/bmad/tools", status="200") == TOOLS_REQUESTS
    assert sample_value(fams, family, requests, method="GET", route="/bmad/tools/{tool_id}",
                        status="404") == len(UNKNOWN_TOOLS)
    assert sample_value(fams, family, requests, method="GET", route="other",
                        status="404") == len(RANDOM_404_PATHS)
    # whatever the path, the label is a template or "other", never the raw path
    routes = {s.labels["route"] for s in fams[family].samples}
    assert routes <= {"/bmad/tools", "/bmad/tools/{tool_id}", "other"}, routes

    duration = "bmad_http_request_duration_seconds"
    assert sample_value(fams, duration, duration + "_count", route="/bmad/tools") == TOOLS_REQUESTS
    assert sample_value(fams, duration, duration + "_bucket", route="/bmad/tools", le="+Inf") == TOOLS_REQUESTS
    assert sample_value(fams, duration, duration + "_count", route="/bmad/tools/{tool_id}") == len(UNKNOWN_TOOLS)

    assert sample_value(fams, "bmad_http_requests_in_flight", "bmad_http_requests_in_flight") == 1  # this scrape
    assert sample_value(fams, "bmad_build_info", "bmad_build_info", version=__version__,
                        python=platform.python_version()) == 1

    assert sample_value(fams, "process_start_time_seconds", "process_start_time_seconds") <= time.time()
    assert sample_value(fams, "process_resident_memory_bytes", "process_resident_memory_bytes") > 0
    assert sample_value(fams, "process_open_fds", "process_open_fds") > 0
    assert sample_value(fams, "process_cpu_seconds", "process_cpu_seconds_total") > 0

    # the second scrape counts the first one, under its own route
    fams = families_by_name(scrape(client))
    assert sample_value(fams, family, requests, method="GET", route="/bmad/metrics", status="200") == 1


def test_every_histogram_has_cumulative_buckets_ending_in_inf_equal_to_count(start_app, client_for):
    service = start_app()
    client = client_for(service)
    drive(client)
    fams = families_by_name(scrape(client))
    histograms = [f for f in fams.values() if f.type == "histogram"]
    assert histograms
    checked = 0
    for family in histograms:
        series = {}
        for s in family.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            series.setdefault(key, {"buckets": []})
            if s.name.endswith("_bucket"):
                series[key]["buckets"].append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                series[key]["count"] = s.value
            elif s.name.endswith("_sum"):
                series[key]["sum"] = s.value
        for key, parts in series.items():
            where = f"{family.name}{dict(key)}"
            bounds = [b for b, _ in parts["buckets"]]
            counts = [c for _, c in parts["buckets"]]
            assert bounds == sorted(bounds) and bounds[-1] == float("inf"), where
            assert counts == sorted(counts), f"{where}: buckets are not cumulative: {counts}"
            assert counts[-1] == parts["count"], f"{where}: +Inf bucket {counts[-1]} != _count {parts['count']}"
            assert "sum" in parts, where
            checked += 1
    assert checked >= 2


def test_in_flight_counts_a_request_still_arriving(start_app, client_for):
    service = start_app()
    client = client_for(service)
    slow = socket.create_connection(("127.0.0.1", service.port), timeout=10)
    try:
        slow.sendall(b"GET /bmad/tools HTTP/1.1\r\nHost: x\r\n")  # the head is not finished yet
        in_flight = []

        def counted():
            fams = families_by_name(scrape(client))
            in_flight.append(sample_value(fams, "bmad_http_requests_in_flight", "bmad_http_requests_in_flight"))
            return in_flight[-1] == 2

        support.poll(counted, timeout=10, interval=0)  # scrape until the server thread has read the first byte
        assert in_flight[-1] == 2, f"{len(in_flight)} scrapes saw {sorted(set(in_flight))}"
        slow.sendall(b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := slow.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ")
    finally:
        slow.close()


def test_label_values_are_route_templates_whatever_the_path(start_app, client_for):
    service = start_app()
    client = client_for(service)
    for i in range(20):
        client.get(f"/bmad/tools/x{i}")
        client.get(f"/bmad/random-{i}")
    text = scrape(client)
    assert "x1" not in text and "random" not in text
    fams = families_by_name(text)
    samples = fams["bmad_http_requests"].samples
    assert {(s.labels["route"], s.labels["status"], s.value) for s in samples} == {
        ("/bmad/tools/{tool_id}", "404", 20.0), ("other", "404", 20.0)}


# --- the optional scrape token ---------------------------------------------------

@pytest.mark.parametrize("how", ["config", "environment"])
def test_metrics_token_guards_the_scrape(start_app, client_for, how):
    token = "scrape-token-123"
    if how == "config":
        service = start_app(data={"metrics": {"token": token}})
    else:
        service = start_app(environ={"BMAD_METRICS_TOKEN": token})
    client = client_for(service)
    for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        resp = client.get("/bmad/metrics", headers=headers)
        assert resp.status == 401
        assert resp.json["error"]["type"] == "invalid_metrics_token"
        assert token.encode() not in resp.body
    text = scrape(client, headers={"Authorization": f"Bearer {token}"})
    assert token not in text
    assert client.get("/bmad/health").status == 200  # health stays open


# --- the rules and the dashboard only query exported names -------------------------

def test_alert_rules_and_dashboard_query_only_exported_names(start_app, client_for):
    service = start_app()
    client = client_for(service)
    drive(client)
    exported = exported_names(scrape(client))
    queried = monitoring_metric_names()

    assert ALLOWED_EXTERNAL <= EXTERNAL_METRICS
    assert NOT_YET_EXPORTED <= SERVICE_METRICS, f"not contracted names: {sorted(NOT_YET_EXPORTED - SERVICE_METRICS)}"
    landed = sorted(NOT_YET_EXPORTED & exported)
    assert not landed, f"now exported: remove {landed} from NOT_YET_EXPORTED in {__file__}"
    missing = sorted(queried - exported - NOT_YET_EXPORTED - ALLOWED_EXTERNAL)
    assert not missing, f"the alert rules or the dashboard query names that /bmad/metrics does not export: {missing}"
    unexported_contract = sorted(SERVICE_METRICS - exported - NOT_YET_EXPORTED)
    assert not unexported_contract, f"contracted names missing from a live scrape: {unexported_contract}"


# --- a real Prometheus server scrapes the service ---------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_get(base, path, **params):
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else base + path
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def poll(what, check, seconds=20.0, every=0.25):
    """Call ``check()`` until it returns a truthy value; fail after ``seconds``.

    Prometheus scrapes on its own schedule, so this integration test has to
    wait for it; the wait is bounded and explains itself when it gives up.
    """
    # OSError, ValueError: not listening yet, or a half-started server
    return support.eventually(check, timeout=seconds, interval=every, what=what, ignore=(OSError, ValueError))


@pytest.fixture
def prometheus_server(tmp_path):
    """``start(target_port, token=None)`` -> base URL of a Prometheus scraping the target every second."""
    binary = require_tool("prometheus")
    procs = []

    def start(target_port, token=None):
        port = free_port()
        job = {"job_name": "bmad-api", "metrics_path": "/bmad/metrics", "scrape_interval": "1s",
               "scrape_timeout": "1s", "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}
        if token:
            job["authorization"] = {"type": "Bearer", "credentials": token}
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": [job]}
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        log = open(tmp_path / "prometheus.log", "wb")
        proc = subprocess.Popen(
            [binary, f"--config.file={config_path}", f"--web.listen-address=127.0.0.1:{port}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        log.close()
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"

        def ready():
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited with {proc.returncode}:\n{(tmp_path / 'prometheus.log').read_text()}")
            with urllib.request.urlopen(base + "/-/ready", timeout=2) as resp:
                return resp.status == 200

        poll("prometheus to be ready", ready)
        return base

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def query(base, expr):
    """The instant vector result of ``expr`` as [(labels, float value)]."""
    body = api_get(base, "/api/v1/query", query=expr)
    assert body["status"] == "success", body
    return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]


@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_service(start_app, client_for, prometheus_server):
    token = "prom-scrape-token"
    service = start_app(data={"metrics": {"token": token}})
    client = client_for(service)
    drive(client)
    base = prometheus_server(service.port, token=token)

    expr = 'sum(bmad_http_requests_total{route="/bmad/tools"})'
    result = poll(f"{expr} to appear", lambda: query(base, expr))
    assert result == [({}, float(TOOLS_REQUESTS))]

    assert query(base, 'up{job="bmad-api"}')[0][1] == 1.0
    targets = api_get(base, "/api/v1/targets")["data"]["activeTargets"]
    assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")]
    assert query(base, 'sum(bmad_http_requests_total{route="other", status="404"})') == [({}, float(len(RANDOM_404_PATHS)))]
    build = query(base, "bmad_build_info")
    assert [(labels["version"], value) for labels, value in build] == [(__version__, 1.0)]
    count = query(base, 'bmad_http_request_duration_seconds_count{route="/bmad/tools"}')
    assert [value for _, value in count] == [float(TOOLS_REQUESTS)]
    p99 = query(base, 'histogram_quantile(0.99, sum by (le) '
                      '(bmad_http_request_duration_seconds_bucket{route="/bmad/tools"}))')
    assert len(p99) == 1 and 0 < p99[0][1] <= 60
    assert query(base, "process_resident_memory_bytes")[0][1] > 0
    # Prometheus' own scrapes show up under the metrics route, authenticated by the token
    scrapes = poll("a counted scrape", lambda: query(base, 'sum(bmad_http_requests_total{route="/bmad/metrics"})'))
    assert scrapes[0][1] >= 1
