"""Run the entrypoint the way the container image would, without a Docker engine.

The test reads the Dockerfile itself (ENV, WORKDIR, COPY, USER, ENTRYPOINT and
the JSON-form HEALTHCHECK), lays the copied files out world-readable in a
root-owned directory like the image's COPY does, gives the service a fresh
``/data``-like directory, and starts ``bmad_api.py`` as the image's numeric
non-root user when the test runs as root. ``/bmad/health`` must answer, the
HEALTHCHECK command must pass, and SIGTERM must end the process with exit 0.
"""

import http.client
import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from tests.support import poll
from tests.tooling import REPO_ROOT, tools_required

pytestmark = pytest.mark.slow

DOCKERFILE = REPO_ROOT / "Dockerfile"
# What a python:3.11-slim image has besides the Dockerfile's own ENV.
BASE_ENV = {"PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
START_SECONDS = 20
STOP_SECONDS = 30


# --- reading the Dockerfile ------------------------------------------------------

def instructions(path=DOCKERFILE):
    """The Dockerfile as [(INSTRUCTION, arguments)], continuations joined and comments dropped."""
    result, pending = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # Docker drops comment lines, even inside a continuation
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).strip().partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    return result


def env_of(instrs):
    """Every ENV instruction's variables, in order (``k=v ...`` and the legacy ``k v`` form)."""
    env = {}
    for keyword, args in instrs:
        if keyword != "ENV":
            continue
        words = shlex.split(args)
        if all("=" in w for w in words):
            env.update(w.split("=", 1) for w in words)
        else:
            env[words[0]] = " ".join(words[1:])
    return env


def one(instrs, keyword):
    found = [args for k, args in instrs if k == keyword]
    assert found, f"the Dockerfile has no {keyword}"
    return found[-1]


def exec_form(text, what):
    try:
        argv = json.loads(text)
    except ValueError:
        pytest.fail(f"{what} is not in exec (JSON) form: {text}")
    assert isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv), what
    return argv


def healthcheck_argv(instrs):
    args = one(instrs, "HEALTHCHECK")
    match = re.search(r"(?:^|\s)CMD\s+(.*)$", args, re.S)
    assert match, f"HEALTHCHECK without CMD: {args}"
    return exec_form(match.group(1), "HEALTHCHECK CMD")


def copies(instrs):
    """[(source path in the repo, destination in the image)] for each plain COPY."""
    pairs = []
    workdir = "/"
    for keyword, args in instrs:
        if keyword == "WORKDIR":
            workdir = os.path.join(workdir, args)
        elif keyword == "COPY":
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            assert not any(w.startswith("--from") for w in shlex.split(args)), "multi-stage COPY is not modelled"
            *sources, dest = words
            dest = os.path.join(workdir, dest)
            for source in sources:
                pairs.append((source, dest))
    return pairs


# --- laying out the image ----------------------------------------------------------

def install_like_copy(instrs, root):
    """Copy the COPY sources under ``root`` (the image's /), root-owned and world-readable."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "*.pyd")
    for source, dest in copies(instrs):
        src = REPO_ROOT / source
        target = Path(str(root) + dest)
        if src.is_dir():
            shutil.copytree(src, target, ignore=ignore, dirs_exist_ok=True)
        else:
            if dest.endswith("/"):
                target = target / src.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)


def image_user(instrs):
    """The numeric (uid, gid) of the USER instruction."""
    user = one(instrs, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and (not gid or gid.isdigit()), f"USER must be numeric for runAsNonRoot: {user}"
    return int(uid), int(gid or uid)


def interpreter_for(uid, gid, run_as):
    """A Python 3.11+ this uid can execute (the test's own may live under /root)."""
    candidates = [sys.executable] + [shutil.which(n, path=BASE_ENV["PATH"]) for n in ("python3.11", "python3")]
    for candidate in filter(None, dict.fromkeys(candidates)):
        try:
            out = subprocess.run([candidate, "-c", "import sys; print(sys.version_info >= (3, 11))"],
                                 capture_output=True, timeout=30, env=BASE_ENV, cwd="/", **run_as)
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == b"True":
            return candidate
    reason = f"no Python 3.11+ that uid {uid} can run (tried {candidates})"
    if tools_required():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def with_python(argv, python):
    """``argv`` with the image's ``python`` replaced by an interpreter this host has."""
    assert argv[0] in ("python", "python3"), f"expected a python command: {argv}"
    return [python] + argv[1:]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lines:
    """Reads a pipe in a thread so the test can wait for a line with a deadline."""

    def __init__(self, pipe):
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe):
        for line in iter(pipe.readline, b""):
            self._queue.put(line.decode("utf-8", "replace"))
        self._queue.put(None)

    def wait_for(self, predicate, seconds):
        """Return the first line satisfying ``predicate``; None at EOF or after ``seconds``."""
        def next_match():
            line = self._queue.get(timeout=0.05)
            if line is None:
                raise EOFError
            self.lines.append(line)
            return line if predicate(line) else None

        try:  # an empty queue is "not yet"; the get itself waits, so poll needs no interval
            return poll(next_match, timeout=seconds, interval=0, ignore=(queue.Empty,))
        except EOFError:
            return None

    def rest(self, seconds=5):
        self.wait_for(lambda line: False, seconds)
        return "".join(self.lines)


@pytest.fixture
def image_root():
    """A directory standing in for the image's filesystem, traversable by any uid."""
    root = Path(tempfile.mkdtemp(prefix="bmad-image-", dir="/tmp"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_dockerfile_entrypoint_runs_as_non_root_and_answers_health(image_root):
    instrs = instructions()
    env = dict(BASE_ENV)
    env.update(env_of(instrs))
    assert env.get("BMAD_HOST") == "0.0.0.0" and env.get("BMAD_DATA_DIR") == "/data"
    assert env.get("PYTHONUNBUFFERED") == "1"
    entrypoint = exec_form(one(instrs, "ENTRYPOINT"), "ENTRYPOINT")
    assert entrypoint[1:] == ["bmad_api.py"], entrypoint
    health_argv = healthcheck_argv(instrs)
    uid, gid = image_user(instrs)
    assert uid != 0

    install_like_copy(instrs, image_root)
    workdir = Path(str(image_root) + one(instrs, "WORKDIR"))
    assert (workdir / "bmad_api.py").is_file() and (workdir / "bmad" / "__init__.py").is_file()
    data_dir = image_root / "data"  # the image's VOLUME /data: owned by the service user, 0750
    data_dir.mkdir(mode=0o750)
    run_as = {}
    if os.geteuid() == 0:
        os.chown(data_dir, uid, gid)
        run_as = dict(user=uid, group=gid, extra_groups=[])
    port = free_port()
    env.update(BMAD_DATA_DIR=str(data_dir), BMAD_PORT=str(port))
    env.pop("BMAD_API_KEYS", None)
    python = interpreter_for(uid, gid, run_as)
    code_before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))

    health_argv = with_python(health_argv, python)
    proc = subprocess.Popen(with_python(entrypoint, python), cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **run_as)
    logs = Lines(proc.stderr)
    try:
        started = logs.wait_for(lambda line: '"started"' in line, START_SECONDS)
        assert started, f"no 'started' log line within {START_SECONDS}s; exit {proc.poll()}; log:\n{logs.rest()}"
        assert json.loads(started)["port"] == port

        if run_as:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
            gids = re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()
            groups = re.search(r"^Groups:[ \t]*(.*)$", status, re.M).group(1).split()
            assert set(uids) == {str(uid)} and set(gids) == {str(gid)} and groups in ([], [str(gid)])

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # bound to 0.0.0.0, checked here
        conn.request("GET", "/bmad/health")
        resp = conn.getresponse()
        body = json.loads(resp.read())
        conn.close()
        assert resp.status == 200 and body["status"] == "healthy", body

        check = subprocess.run(health_argv, cwd=workdir, env=env, capture_output=True, timeout=30, **run_as)
        assert check.returncode == 0, f"HEALTHCHECK {health_argv} failed: {check.stderr.decode()}"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_SECONDS) == 0, logs.rest()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    log = logs.rest()
    assert "Traceback" not in log, log
    assert '"signal": "SIGTERM"' in log and '"stopped"' in log, log

    # Nothing was written next to the code (the image's root filesystem is read-only).
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == code_before
    # And with the service gone the HEALTHCHECK fails, so it really checks something.
    check = subprocess.run(health_argv, cwd=workdir, env=env, capture_output=True, timeout=30, **run_as)
    assert check.returncode != 0
