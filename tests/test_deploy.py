"""Deployment artefacts: Dockerfile, Kubernetes manifests, alerts, dashboard, runbooks.

Outside tools (hadolint, promtool, kubernetes-validate, checkov) go through
``tooling.require_tool``: a laptop without them skips those tests, CI with
``BMAD_REQUIRE_TOOLS=1`` fails instead. Everything else is plain Python over
the files, with PyYAML. checkov is slow, so it runs once per framework.
"""

import copy
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading

import pytest

from tests import tooling
from tests.tooling import ALLOWED_METRICS, promql_metric_names, require_module, require_tool

yaml = require_module("yaml")

ROOT = tooling.REPO_ROOT
K8S = tooling.K8S_DIR
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RULES = tooling.PROMETHEUS_RULES
RULE_TESTS = sorted((K8S / "tests").glob("*.test.yaml"))
DASHBOARD = tooling.DASHBOARD
SECRET_TEMPLATE = K8S / "secret.template.yaml"

NAMESPACE = "cerebral-alpha"
APP = "bmad-api-enhanced"
CONTAINER = "bmad-api"
UID = 10001
PORT = 8080
try:
    DRAIN_SECONDS = json.loads((ROOT / "bmad" / "defaults.json").read_text(encoding="utf-8"))["server"]["drain_seconds"]
except (OSError, KeyError, ValueError):
    DRAIN_SECONDS = 20  # the documented default of server.drain_seconds
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
CLUSTER_SCOPED_KINDS = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
    "StorageClass", "PriorityClass", "IngressClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
# Kubernetes releases whose schemas the manifests must satisfy.
K8S_VERSIONS = ("1.29.0", "1.37.0")
TOOL_TIMEOUT = 180


def run(argv, **kwargs):
    """Run a command, capturing text output; a hang fails the test instead of the run."""
    kwargs.setdefault("timeout", TOOL_TIMEOUT)
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)


def load_docs(path):
    """Return the non-empty YAML documents of ``path``."""
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def manifest_files():
    """Every Kubernetes manifest file under k8s/ (not the kustomization, not promtool tests)."""
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def raw_manifests():
    """``(path, doc)`` for every document of every manifest file."""
    return [(path, doc) for path in manifest_files() for doc in load_docs(path)]


# --- a small kustomize ---------------------------------------------------------

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images", "configMapGenerator"}


def pod_spec_paths(doc):
    """Yield the pod specs inside a workload document."""
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        yield spec
    elif kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        yield spec["template"]["spec"]
    elif kind == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]


def all_containers(pod_spec):
    """Every container of a pod spec, init and ephemeral ones included."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod_spec.get(key) or []


def split_image(image):
    """``registry/name:tag@digest`` -> ``(registry/name, tag or None)``."""
    name = image.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
        return name, tag
    return name, None


def render_kustomization(directory=K8S):
    """Build ``directory/kustomization.yaml`` the way ``kustomize build`` does, for the fields it uses.

    A field this renderer does not model fails the test, so it cannot silently
    drift from what kubectl would apply.
    """
    kustomization = load_docs(directory / "kustomization.yaml")[0]
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    assert not unknown, f"render_kustomization does not model kustomization fields {sorted(unknown)}"
    docs = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        assert path.is_file(), f"kustomization resource {resource} does not exist"
        docs.extend(load_docs(path))
    for generator in kustomization.get("configMapGenerator", []):
        options = generator.get("options", {})
        assert options.get("disableNameSuffixHash") is True, (
            f"configMapGenerator {generator['name']}: name hashes are not modelled here; keep disableNameSuffixHash"
        )
        data = {}
        for entry in generator.get("files", []):
            key, _, source = entry.rpartition("=")
            source_path = directory / source
            assert source_path.is_file(), f"configMapGenerator {generator['name']}: file {source} does not exist"
            data[key or source_path.name] = source_path.read_text(encoding="utf-8")
        for entry in generator.get("literals", []):
            key, _, value = entry.partition("=")
            data[key] = value
        metadata = {"name": generator["name"]}
        if generator.get("namespace"):
            metadata["namespace"] = generator["namespace"]
        if options.get("labels"):
            metadata["labels"] = dict(options["labels"])
        if options.get("annotations"):
            metadata["annotations"] = dict(options["annotations"])
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    namespace = kustomization.get("namespace")
    for doc in docs:
        if namespace and doc["kind"] not in CLUSTER_SCOPED_KINDS:
            doc["metadata"]["namespace"] = namespace
    for image in kustomization.get("images", []):
        for doc in docs:
            for pod_spec in pod_spec_paths(doc):
                for container in all_containers(pod_spec):
                    current_name, current_tag = split_image(container["image"])
                    if current_name != image["name"]:
                        continue
                    name = image.get("newName", image["name"])
                    if image.get("digest"):
                        container["image"] = f"{name}@{image['digest']}"
                    else:
                        tag = image.get("newTag", current_tag)
                        container["image"] = f"{name}:{tag}" if tag else name
    return docs


@pytest.fixture(scope="module")
def rendered():
    return render_kustomization()


def find(docs, kind, name=None):
    """The one document of ``kind`` (and ``name``) in ``docs``."""
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


@pytest.fixture(scope="module")
def deployment(rendered):
    return find(rendered, "Deployment", APP)


@pytest.fixture(scope="module")
def pod_spec(deployment):
    return deployment["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod_spec):
    (only,) = [c for c in pod_spec["containers"] if c["name"] == CONTAINER]
    return only


# --- Dockerfile ----------------------------------------------------------------

def dockerfile_instructions():
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def instruction_args(keyword):
    return [rest for kw, rest in dockerfile_instructions() if kw == keyword]


@pytest.mark.slow
def test_hadolint_reports_nothing():
    hadolint = require_tool("hadolint")
    result = run([hadolint, "--no-color", str(DOCKERFILE)], cwd=ROOT)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dockerfile_base_image_is_slim_python_pinned_to_a_minor_version():
    (base,) = instruction_args("FROM")
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base


def test_dockerfile_installs_nothing_and_copies_only_the_service():
    text = " ".join(rest for _, rest in dockerfile_instructions())
    assert not re.search(r"\bpip3?\b|\bapt(-get)?\b|\bcurl\b|\bwget\b", text), "the image installs nothing"
    sources = set()
    for args in instruction_args("COPY") + instruction_args("ADD"):
        parts = [p for p in args.split() if not p.startswith("--")]
        sources.update(p.rstrip("/") for p in parts[:-1])
    assert not instruction_args("ADD")
    assert sources == {"bmad_api.py", "bmad"}


def test_dockerfile_runtime_settings():
    env = {}
    for args in instruction_args("ENV"):
        env.update(dict(pair.split("=", 1) for pair in args.split()))
    assert env["BMAD_HOST"] == "0.0.0.0"
    assert env["BMAD_DATA_DIR"] == "/data"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert instruction_args("EXPOSE") == [str(PORT)]
    assert [json.loads(v) for v in instruction_args("VOLUME")] == [["/data"]]
    users = instruction_args("USER")
    assert users and re.fullmatch(rf"{UID}(:{UID})?", users[-1]), "the last USER is numeric 10001"
    (entrypoint,) = instruction_args("ENTRYPOINT")
    assert json.loads(entrypoint) == ["python", "bmad_api.py"]
    assert not instruction_args("CMD")


def healthcheck_argv():
    (healthcheck,) = instruction_args("HEALTHCHECK")
    match = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(\[.*\])", healthcheck)
    assert match, f"HEALTHCHECK must use the exec (JSON) form: {healthcheck}"
    return json.loads(match.group(2))


def test_dockerfile_healthcheck_uses_python_urllib_in_exec_form():
    argv = healthcheck_argv()
    assert argv[0] == "python" and "urllib" in " ".join(argv) and "/bmad/health" in " ".join(argv)
    assert "curl" not in " ".join(argv)


class _HealthStub(http.server.BaseHTTPRequestHandler):
    status = 200
    paths = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).paths.append(self.path)
        body = b'{"status": "ok"}'
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status, healthy", [(200, True), (503, False), (None, False)])
def test_dockerfile_healthcheck_command_against_a_real_server(status, healthy):
    """The HEALTHCHECK command itself: exit 0 on 200, non-zero on 503 (draining) or no listener."""
    argv = [sys.executable] + healthcheck_argv()[1:]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HealthStub)
    port = server.server_address[1]
    _HealthStub.paths = []
    _HealthStub.status = status or 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    if status is not None:
        thread.start()
    else:
        server.server_close()  # nothing listens on the port any more
    try:
        result = run(argv, env={**os.environ, "BMAD_PORT": str(port)}, timeout=30)
    finally:
        if status is not None:
            server.shutdown()
            server.server_close()
    assert (result.returncode == 0) is healthy, result.stderr
    if status is not None:
        assert _HealthStub.paths == ["/bmad/health"]


def test_dockerignore_admits_only_the_service_code():
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    assert {p[1:].rstrip("/") for p in patterns if p.startswith("!")} == {"bmad_api.py", "bmad"}


# --- checkov ---------------------------------------------------------------------

def _checkov(args):
    checkov = require_tool("checkov")
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_LOG_LEVEL": "ERROR"}
    result = run([checkov, *args, "--skip-download", "--compact", "-o", "json"], cwd=ROOT, env=env)
    assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr[-4000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    for report in reports:
        assert "results" in report, f"checkov found nothing to scan: {report}"
    return reports


@pytest.fixture(scope="module")
def checkov_kubernetes():
    return _checkov(["-d", str(K8S), "--framework", "kubernetes"])


@pytest.fixture(scope="module")
def checkov_dockerfile():
    return _checkov(["-f", str(DOCKERFILE), "--framework", "dockerfile"])


def _failed(reports):
    return [
        f"{c['check_id']} {c['check_name']} ({c['resource']}, {c['file_path']})"
        for report in reports for c in report["results"]["failed_checks"]
    ]


def _suppress_comment(check):
    return (check.get("check_result", {}).get("suppress_comment") or check.get("suppress_comment") or "").strip()


def skip_annotations():
    """``{(check id, resource kind, name): reason}`` from ``checkov.io/skipN`` annotations."""
    skips = {}
    for _, doc in raw_manifests():
        for key, value in (doc["metadata"].get("annotations") or {}).items():
            if re.fullmatch(r"checkov\.io/skip\d+", key):
                check_id, _, reason = value.partition("=")
                skips[(check_id, doc["kind"], doc["metadata"]["name"])] = reason
    return skips


@pytest.mark.slow
def test_checkov_dockerfile_has_no_failed_check(checkov_dockerfile):
    assert not _failed(checkov_dockerfile)
    assert sum(r["summary"]["passed"] for r in checkov_dockerfile) > 10
    for report in checkov_dockerfile:
        for check in report["results"]["skipped_checks"]:
            assert _suppress_comment(check), f"{check['check_id']} is skipped without a reason"


@pytest.mark.slow
def test_checkov_kubernetes_has_no_failed_check(checkov_kubernetes):
    assert not _failed(checkov_kubernetes)
    assert all(r["summary"]["parsing_errors"] == 0 for r in checkov_kubernetes)
    assert sum(r["summary"]["passed"] for r in checkov_kubernetes) > 50


@pytest.mark.slow
def test_checkov_kubernetes_skips_are_annotated_with_reasons(checkov_kubernetes):
    annotated = skip_annotations()
    for (check_id, _, _), reason in annotated.items():
        assert re.fullmatch(r"CKV2?_K8S_\d+", check_id) and len(reason.strip()) > 20, (check_id, reason)
    for report in checkov_kubernetes:
        for check in report["results"]["skipped_checks"]:
            kind, name = check["resource"].split(".")[0], check["resource"].split(".")[-1]
            assert (check["check_id"], kind, name) in annotated, f"{check['check_id']} skipped for {check['resource']} without a checkov.io/skip annotation"
            assert _suppress_comment(check), f"{check['check_id']} is skipped without a reason"


# --- manifests: schema, namespace, kustomization ---------------------------------

def _kubernetes_validate(paths, version):
    tool = require_tool("kubernetes-validate")
    result = run([tool, "--strict", "--kubernetes-version", version, *map(str, paths)])
    assert result.returncode == 0 and "ERROR" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_file_validates_strictly(version, tmp_path):
    """Built-in kinds against the Kubernetes schema; CRDs are checked in test_custom_resources_are_well_formed."""
    paths = []
    for index, (path, doc) in enumerate(raw_manifests()):
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue
        out = tmp_path / f"{index:02d}-{path.name}"
        out.write_text(yaml.safe_dump(doc), encoding="utf-8")
        paths.append(out)
    output = _kubernetes_validate(paths, version)
    assert output.count("passed for resource") == len(paths), output


@pytest.mark.slow
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kustomize_output_validates_strictly(rendered, version, tmp_path):
    builtin = [d for d in rendered if (d["apiVersion"], d["kind"]) not in CRD_KINDS]
    out = tmp_path / "rendered.yaml"
    out.write_text(yaml.safe_dump_all(builtin), encoding="utf-8")
    output = _kubernetes_validate([out], version)
    assert output.count("passed for resource") == len(builtin), output


@pytest.mark.slow
def test_validator_rejects_an_unknown_field(tmp_path):
    """kubernetes-validate --strict is live: a misspelt field fails."""
    tool = require_tool("kubernetes-validate")
    doc = copy.deepcopy(find(load_docs(K8S / "deployment.yaml"), "Deployment"))
    doc["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc), encoding="utf-8")
    result = run([tool, "--strict", str(bad)])
    assert result.returncode != 0 and "readinessprobe" in result.stdout + result.stderr


def test_custom_resources_are_well_formed(rendered):
    """kubernetes-validate ships no schemas for Prometheus Operator CRDs; check their shape here."""
    service = find(rendered, "Service", APP)
    monitor = find(rendered, "ServiceMonitor", APP)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) <= {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels", "podTargetLabels"}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports
        assert endpoint["path"] == "/bmad/metrics"
        assert re.fullmatch(r"\d+[smh]", endpoint["interval"])
        credentials = endpoint.get("authorization", {}).get("credentials")
        if credentials:
            assert credentials["name"] == find(load_docs(SECRET_TEMPLATE), "Secret")["metadata"]["name"]
            assert credentials["key"] == "BMAD_METRICS_TOKEN"

    rule = find(rendered, "PrometheusRule", APP)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    names = [g["name"] for g in rule["spec"]["groups"]]
    assert len(names) == len(set(names)), "rule group names are unique"
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"} and group["rules"]
        for r in group["rules"]:
            assert ("alert" in r) != ("record" in r) and r["expr"]
            assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations", "keep_firing_for"}


def test_every_namespaced_manifest_states_the_namespace_itself():
    for path, doc in raw_manifests():
        if doc["kind"] in CLUSTER_SCOPED_KINDS:
            assert "namespace" not in doc["metadata"], f"{path.name}: {doc['kind']} is cluster-scoped"
        else:
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{path.name}: {doc['kind']} {doc['metadata']['name']}"
    kustomization = load_docs(K8S / "kustomization.yaml")[0]
    assert kustomization["namespace"] == NAMESPACE
    for generator in kustomization.get("configMapGenerator", []):
        assert generator.get("namespace") == NAMESPACE, f"configMapGenerator {generator['name']}"


def test_rendered_objects_are_all_in_the_namespace(rendered):
    for doc in rendered:
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == NAMESPACE
            assert doc["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        else:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]


def test_kustomization_lists_every_manifest_but_the_secret_template():
    kustomization = load_docs(K8S / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    assert len(listed) == len(kustomization["resources"]), "no resource is listed twice"
    on_disk = {p.name for p in manifest_files()}
    assert listed <= on_disk
    assert on_disk - listed == {SECRET_TEMPLATE.name}, "a manifest is neither deployed nor the secret template"


def test_kustomization_generates_the_grafana_dashboard_configmap(rendered):
    dashboard = find(rendered, "ConfigMap", "bmad-api-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["bmad-api.json"]) == json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_kubectl_kustomize_agrees_with_the_renderer(rendered):
    """Cross-check with the real kustomize when kubectl is on the machine (no package provides it in CI)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; render_kustomization stands in for it")
    result = run([kubectl, "kustomize", str(K8S)])
    assert result.returncode == 0, result.stderr
    real = [d for d in yaml.safe_load_all(result.stdout) if d]

    def key(d):
        return d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]

    assert sorted(map(key, real)) == sorted(map(key, rendered))
    by_key = {key(d): d for d in rendered}
    for doc in real:
        assert doc == by_key[key(doc)], f"{key(doc)} differs from render_kustomization"


# --- the pods: Pod Security Standards "restricted" -------------------------------

RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}


def test_every_pod_template_meets_the_restricted_profile(rendered):
    pod_specs = [spec for doc in rendered for spec in pod_spec_paths(doc)]
    assert pod_specs, "there is a pod template to check"
    for spec in pod_specs:
        pod_sc = spec.get("securityContext") or {}
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host), host
        assert spec.get("automountServiceAccountToken") is False
        assert pod_sc.get("runAsNonRoot") is True
        assert pod_sc.get("runAsUser") == UID and pod_sc.get("runAsGroup") == UID and pod_sc.get("fsGroup") == UID
        assert (pod_sc.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
        assert not pod_sc.get("sysctls"), "no sysctls"
        for volume in spec.get("volumes") or []:
            types = set(volume) - {"name"}
            assert types <= RESTRICTED_VOLUME_TYPES, f"volume {volume['name']} uses {types}"
        for c in all_containers(spec):
            sc = c.get("securityContext") or {}
            assert sc.get("allowPrivilegeEscalation") is False, c["name"]
            assert sc.get("privileged") in (None, False), c["name"]
            assert sc.get("readOnlyRootFilesystem") is True, c["name"]
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), c["name"]
            assert set(sc.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}, c["name"]
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, c["name"]
            assert isinstance(sc.get("runAsUser", pod_sc.get("runAsUser")), int) and sc.get("runAsUser", UID) != 0
            assert (sc.get("seccompProfile") or pod_sc["seccompProfile"])["type"] in ("RuntimeDefault", "Localhost")
            assert sc.get("procMount", "Default") == "Default"
            assert (sc.get("seLinuxOptions") or {}).get("type") in (None, "container_t", "container_init_t", "container_kvm_t")
            assert (sc.get("appArmorProfile") or {}).get("type") != "Unconfined"
            for port in c.get("ports") or []:
                assert "hostPort" not in port, c["name"]


def test_service_account_mounts_no_token(rendered, pod_spec):
    account = find(rendered, "ServiceAccount", pod_spec["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False


# --- the Deployment and its neighbours --------------------------------------------

def _probe_port(container, probe):
    port = probe["httpGet"]["port"]
    if isinstance(port, str):
        (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return port


def test_deployment_shape(deployment, pod_spec, container):
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert container["image"].split("/")[-1].startswith("bmad-api")
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container[name]
        assert probe["httpGet"]["path"] == "/bmad/health", name
        assert _probe_port(container, probe) == PORT, name
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(PORT)
    assert annotations["prometheus.io/path"] == "/bmad/metrics"


def test_termination_grace_outlasts_prestop_and_drain(pod_spec, container):
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    sleep = 0
    if "exec" in pre_stop:
        command = pre_stop["exec"]["command"]
        assert command[0] == "sleep"
        sleep = int(command[1])
    elif "sleep" in pre_stop:
        sleep = pre_stop["sleep"]["seconds"]
    assert pod_spec["terminationGracePeriodSeconds"] > sleep + DRAIN_SECONDS


def test_container_environment_and_mounts(rendered, pod_spec, container):
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env["BMAD_HOST"] == "0.0.0.0" and env["BMAD_PORT"] == str(PORT)
    # one directory per pod on the shared volume: never two SQLite writers on one file
    assert env["BMAD_DATA_DIR"] == "/data/$(POD_NAME)"
    pod_name = next(e for e in container["env"] if e["name"] == "POD_NAME")
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    names = [e["name"] for e in container["env"]]
    assert names.index("POD_NAME") < names.index("BMAD_DATA_DIR"), "$(POD_NAME) expands only if defined first"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec["volumes"]}

    config_dir, config_file = env["BMAD_CONFIG"].rsplit("/", 1)
    config_volume = volumes[mounts[config_dir]["name"]]
    assert mounts[config_dir].get("readOnly") is True
    config_map = find(rendered, "ConfigMap", config_volume["configMap"]["name"])
    assert config_file in config_map["data"]

    claim = volumes[mounts["/data"]["name"]]["persistentVolumeClaim"]["claimName"]
    find(rendered, "PersistentVolumeClaim", claim)
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert set(mounts) == {config_dir, "/data", "/tmp"}, "nothing else is writable or mounted"

    secret = find(load_docs(SECRET_TEMPLATE), "Secret")
    assert [s["secretRef"]["name"] for s in container["envFrom"]] == [secret["metadata"]["name"]]


def test_config_map_holds_only_the_contracted_keys(rendered):
    config_map = find(rendered, "ConfigMap", "bmad-api-config")
    config = json.loads(config_map["data"]["config.json"])
    assert config == {"server": {"host": "0.0.0.0", "port": PORT}, "data_dir": "/data", "providers_required": True}


def test_config_map_is_accepted_by_the_service(rendered, tmp_path):
    """The service's own loader takes the mounted file (it rejects unknown keys)."""
    try:
        from bmad import config as bmad_config
    except ImportError as e:
        pytest.skip(f"bmad.config is not importable yet: {e}")
    path = tmp_path / "config.json"
    path.write_text(find(rendered, "ConfigMap", "bmad-api-config")["data"]["config.json"], encoding="utf-8")
    loaded = bmad_config.load(config_file=str(path), environ={})
    assert loaded.at("server.host") == "0.0.0.0" and loaded.at("server.port") == PORT
    assert loaded.at("data_dir") == "/data"
    assert loaded.at("server.drain_seconds") < find(rendered, "Deployment", APP)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def test_secret_template_holds_placeholders_only():
    (secret,) = load_docs(SECRET_TEMPLATE)
    assert secret["kind"] == "Secret" and "data" not in secret
    expected = {
        "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_DEPLOYMENT", "BMAD_API_KEYS", "BMAD_METRICS_TOKEN",
    }
    assert set(secret["stringData"]) == expected
    for key, value in secret["stringData"].items():
        assert "REPLACE_ME" in value, f"{key} must be a placeholder"
        assert re.fullmatch(r"[A-Z_:a-z]*", value), f"{key} looks like a real value"


def test_service_pdb_and_hpa_target_the_pods(rendered, deployment):
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = find(rendered, "Service", APP)
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(PORT, "http")]

    pdb = find(rendered, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"], "a PDB that allows no eviction blocks node drains"

    hpa = find(rendered, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP}
    assert hpa["spec"]["minReplicas"] >= deployment["spec"]["replicas"]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


def test_network_policy_allows_only_the_api_in_and_dns_and_https_out(rendered, deployment):
    policy = find(rendered, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    ingress_ports = {(p["port"], p.get("protocol", "TCP")) for rule in spec["ingress"] for p in rule["ports"]}
    assert ingress_ports == {(PORT, "TCP")}
    egress_ports = {(p["port"], p.get("protocol", "TCP")) for rule in spec["egress"] for p in rule["ports"]}
    assert egress_ports == {(53, "UDP"), (53, "TCP"), (443, "TCP")}
    assert all(rule.get("ports") for rule in spec["ingress"] + spec["egress"]), "every rule names its ports"


# --- alert rules ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory):
    """A directory with the PrometheusRule's groups as a plain rule file, and the promtool tests."""
    directory = tmp_path_factory.mktemp("rules")
    spec = find(load_docs(RULES), "PrometheusRule")["spec"]
    (directory / "bmad-api.rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    for test in RULE_TESTS:
        shutil.copy(test, directory / test.name)
    return directory


def alerts():
    return [r for g in tooling.rule_groups() for r in g["rules"] if "alert" in r]


@pytest.mark.slow
def test_promtool_check_rules(rules_dir):
    promtool = require_tool("promtool")
    result = run([promtool, "check", "rules", "bmad-api.rules.yaml"], cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(list(tooling.rule_expressions()))} rules found" in result.stdout


@pytest.mark.slow
def test_promtool_unit_tests_pass(rules_dir):
    promtool = require_tool("promtool")
    assert RULE_TESTS, "k8s/tests holds promtool unit tests"
    result = run([promtool, "test", "rules", *[t.name for t in RULE_TESTS]], cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr and "WARNING" not in result.stdout + result.stderr


@pytest.mark.slow
def test_promtool_unit_tests_notice_a_broken_rule(rules_dir, tmp_path):
    """The unit tests are live: weakening the 5xx alert's threshold makes them fail."""
    promtool = require_tool("promtool")
    spec = yaml.safe_load((rules_dir / "bmad-api.rules.yaml").read_text(encoding="utf-8"))
    for group in spec["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "BmadApiHigh5xxRatio":
                rule["expr"] = rule["expr"].replace("> 0.05", "> 0.5")
    (tmp_path / "bmad-api.rules.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    for test in RULE_TESTS:
        shutil.copy(test, tmp_path / test.name)
    result = run([promtool, "test", "rules", *[t.name for t in RULE_TESTS]], cwd=tmp_path)
    assert result.returncode != 0
    assert "alertname: BmadApiHigh5xxRatio" in result.stdout + result.stderr


def _firing_cases():
    """``{alertname: [expected alert, ...]}`` over every unit test that expects it to fire."""
    cases = {}
    for path in RULE_TESTS:
        for test in load_docs(path)[0]["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).extend(case.get("exp_alerts") or [])
    return cases


def test_unit_tests_fire_every_alert_with_its_labels_and_annotations():
    firing = _firing_cases()
    for name in ("BmadApiHigh5xxRatio", "BmadApiProviderDown"):
        (expected, *_) = firing[name]
        assert expected["exp_labels"]["job"] == APP and expected["exp_labels"]["severity"]
        assert set(expected["exp_annotations"]) == {"summary", "description", "runbook_url"}
    assert firing["BmadApiProviderDown"][0]["exp_labels"]["provider"] == "openai"
    untested = [a["alert"] for a in alerts() if not firing.get(a["alert"])]
    assert not untested, f"alerts without a firing unit test: {untested}"
    for name, expected in firing.items():
        rule = next(a for a in alerts() if a["alert"] == name)
        for alert in expected:
            assert rule["labels"].items() <= alert["exp_labels"].items(), name


REQUIRED_ALERTS = {
    "BmadApiHigh5xxRatio",  # high 5xx ratio
    "BmadApiHighLatencyP99",  # p99 latency
    "BmadApiProviderDown",  # a provider down
    "BmadApiCircuitBreakerOpen",  # circuit open > 5 minutes
    "BmadApiRateLimitRejectionsSpiking",  # rate-limit rejections spiking
    "BmadApiAnalyticsEventsDropped",  # analytics events dropped
    "BmadApiErrorBudgetBurnFast",  # multi-window, multi-burn-rate
    "BmadApiErrorBudgetBurnSlow",
    "BmadApiPodRestarting",  # restarts from kube-state-metrics
}


def _github_anchor(heading):
    anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return anchor.replace(" ", "-")


def test_alerts_have_severity_annotations_and_a_runbook_section():
    names = [a["alert"] for a in alerts()]
    assert REQUIRED_ALERTS <= set(names)
    assert len(names) == len(set(names))
    anchors = {
        _github_anchor(m.group(1))
        for m in re.finditer(r"^#{1,6}\s+(.+)$", RUNBOOKS.read_text(encoding="utf-8"), re.M)
    }
    for alert in alerts():
        assert alert["labels"]["severity"] in ("critical", "warning", "info"), alert["alert"]
        annotations = alert["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), alert["alert"]
        url = annotations["runbook_url"]
        assert re.match(r"https://\S+/docs/runbooks\.md#[\w-]+$", url), url
        assert url.split("#", 1)[1] in anchors, f"{alert['alert']}: no section #{url.split('#', 1)[1]} in docs/runbooks.md"


def test_error_budget_alerts_are_multi_window_multi_burn_rate():
    for name, windows in (("BmadApiErrorBudgetBurnFast", {"1h", "5m", "6h", "30m"}),
                          ("BmadApiErrorBudgetBurnSlow", {"1d", "2h", "3d", "6h"})):
        expr = next(a for a in alerts() if a["alert"] == name)["expr"]
        assert set(re.findall(r"\[(\w+)\]", expr)) == windows, name
        assert re.search(r"\band\b", expr) and re.search(r"\bor\b", expr), name


def test_rules_select_the_job_that_the_servicemonitor_creates(rendered):
    """A ServiceMonitor without jobLabel names the job after the Service."""
    monitor = find(rendered, "ServiceMonitor", APP)
    assert "jobLabel" not in monitor["spec"]
    jobs = set()
    for _, expr in tooling.rule_expressions():
        jobs.update(re.findall(r'job="([^"]+)"', expr))
    assert jobs == {find(rendered, "Service", APP)["metadata"]["name"]}


# --- metric names --------------------------------------------------------------------

@pytest.mark.parametrize("expr, names", [
    ('sum by (job) (rate(bmad_http_requests_total{job="x", status=~"5.."}[5m]))', {"bmad_http_requests_total"}),
    ("histogram_quantile(0.99, sum by (le) (rate(bmad_http_request_duration_seconds_bucket[$__rate_interval])))",
     {"bmad_http_request_duration_seconds_bucket"}),
    ("a / on (job) group_left b > 0.1 and on(job, class) c offset 5m", {"a", "b", "c"}),
    ('absent(up{job="bmad"} == 1)', {"up"}),
    ('{__name__="bmad_cache_entries", job="$job"}', {"bmad_cache_entries"}),
    ("time() - process_start_time_seconds{instance=~\"$instance\"}", {"process_start_time_seconds"}),
    ("rate(x[5m:1m]) * 1e3 + 0x1f - inf", {"x"}),
    ("sum without (instance) (y) > bool 2", {"y"}),
    ('max_over_time(z{route="sum(by)"}[1h] @ start())', {"z"}),
])
def test_promql_metric_names(expr, names):
    assert promql_metric_names(expr) == names


def test_rules_and_dashboard_use_only_contracted_metric_names():
    expressions = list(tooling.rule_expressions()) + list(tooling.dashboard_expressions())
    assert len(expressions) > 40
    for where, expr in expressions:
        names = promql_metric_names(expr)
        assert names, f"{where}: no metric name found in {expr!r}"
        assert names <= ALLOWED_METRICS, f"{where}: not in the metric contract: {sorted(names - ALLOWED_METRICS)}"
    restarts = {w for w, e in expressions if "kube_pod_container_status_restarts_total" in promql_metric_names(e)}
    assert restarts == {"BmadApiPodRestarting"}, "kube-state-metrics is for the restart alert only"


# --- dashboard -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboard():
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels(dashboard):
    def walk(panels):
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))
    return list(walk(dashboard["panels"]))


def test_dashboard_datasource_is_a_template_variable(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if "datasource" in variable:
            assert variable["datasource"]["uid"] == "${datasource}", variable["name"]
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] == "${datasource}", panel["title"]


def test_dashboard_panels_are_unique_and_laid_out(dashboard):
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "bmad-api"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert re.fullmatch(r"[A-Z]", target["refId"])


def test_dashboard_covers_the_required_signals(dashboard):
    exprs = " ".join(t["expr"] for p in _panels(dashboard) for t in p.get("targets", []))
    used = promql_metric_names(exprs.replace("\n", " "))
    for metric in (
        "bmad_http_requests_total", "bmad_http_request_duration_seconds_bucket", "bmad_cache_hits_total",
        "bmad_cache_misses_total", "bmad_rate_limited_total", "bmad_provider_request_duration_seconds_bucket",
        "bmad_provider_requests_total", "bmad_circuit_breaker_state", "bmad_llm_tokens_total",
        "bmad_llm_cost_usd_total", "bmad_workflow_runs_total", "bmad_analytics_queue_depth",
        "bmad_analytics_events_dropped_total", "process_resident_memory_bytes", "process_cpu_seconds_total",
    ):
        assert metric in used, f"no panel shows {metric}"
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le) (rate(bmad_http_request_duration_seconds_bucket" in exprs
    assert "sum by (class) (rate(bmad_rate_limited_total" in exprs
    assert "sum by (provider, model, kind) (rate(bmad_llm_tokens_total" in exprs
    assert "sum by (provider, model) (rate(bmad_llm_cost_usd_total" in exprs
    assert "sum by (status) (rate(bmad_workflow_runs_total" in exprs


@pytest.mark.slow
def test_dashboard_queries_are_valid_promql(tmp_path):
    """promtool parses each dashboard query as a recording rule, Grafana variables filled in."""
    promtool = require_tool("promtool")
    substitutions = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h", "job": APP, "instance": ".*"}

    def fill(expr):
        return re.sub(r"\$\{?(\w+)\}?", lambda m: substitutions.get(m.group(1), "x"), expr)

    rules = [
        {"record": f"dashboard_query_{i}", "expr": fill(expr)}
        for i, (_, expr) in enumerate(tooling.dashboard_expressions())
    ]
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
