"""The README's shell blocks, pasted in order into one shell against a fresh ``python bmad_api.py``.

Every ``sh`` block that talks to ``localhost:8080`` runs, in README order, in
one bash process (so a variable one block sets is there for the next), with
``localhost:8080`` pointed at the server under test. ``curl`` is wrapped to
report each answer's status on stderr; every answer must be 2xx and every
block must exit 0.
"""

import re
import subprocess

import pytest

from tests.proc import ROOT, ServerProcess
from tests.tooling import require_tool

BASH = require_tool("bash")
CURL = require_tool("curl")
STATUS = re.compile(r"^README-STATUS (\d{3}) (\S+) (\S+)$", re.M)
# curl reports each answer's status and what it asked for on stderr; stdout stays as the README shows it.
PRELUDE = r"""set -e
curl() { command curl --write-out '%{stderr}README-STATUS %{http_code} %{method} %{url_effective}\n' "$@"; }
"""


def readme_blocks():
    """The README's ``sh`` blocks that call the service, in order."""
    text = (ROOT / "README.md").read_text("utf-8")
    return [body for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)
            if lang == "sh" and "localhost:8080" in body]


def wait_for_analytics(url, user):
    # Analytics commits every flush interval (1 s); a person reading the README is slower than that.
    import time
    import urllib.error
    import urllib.request
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"{url}/bmad/analytics/user/{user}", timeout=5):
                return
        except urllib.error.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def server(tmp_path):
    proc = ServerProcess("--port", "0", "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    proc.wait_port()
    yield proc
    proc.signal()
    proc.wait()


def test_every_readme_shell_block_works_pasted_in_order_on_a_fresh_start(server, tmp_path):
    blocks = readme_blocks()
    assert len(blocks) >= 5, "the README lost its examples"
    host = f"127.0.0.1:{server.wait_port()}"
    script = PRELUDE
    for i, block in enumerate(blocks):
        if "/bmad/analytics" in block:
            script += "echo README-SYNC >&2; read -r _\n"
        script += f"echo README-BLOCK {i} >&2\n{block.replace('localhost:8080', host)}\n"
    script += "echo README-END >&2\n"
    (tmp_path / "readme.sh").write_text(script)
    out_file = open(tmp_path / "stdout.txt", "w+")  # a file, not a pipe: nobody reads it while the shell runs
    # stdin is only for the go-ahead: the script waits (read) before the analytics block until this
    # side saw the events committed.
    shell = subprocess.Popen([BASH, str(tmp_path / "readme.sh")], cwd=tmp_path, stdin=subprocess.PIPE,
                             stdout=out_file, stderr=subprocess.PIPE, text=True)
    stderr_lines = []
    for line in shell.stderr:
        stderr_lines.append(line)
        if line.startswith("README-SYNC"):
            wait_for_analytics(server.url, "anonymous")
            shell.stdin.write("go\n")
            shell.stdin.flush()
        if line.startswith("README-END"):
            break
    shell.stdin.close()
    code = shell.wait(60)
    out_file.seek(0)
    out = out_file.read()
    out_file.close()
    err = "".join(stderr_lines)
    assert code == 0 and "README-END" in err, f"a README block failed (exit {code}):\n{err}\n{out[-3000:]}"
    answers = STATUS.findall(err)
    assert len(answers) >= 30
    bad = [a for a in answers if not a[0].startswith("2")]
    assert bad == [], f"README commands that did not succeed: {bad}\n{err}"
    by_action = {(method, url.rsplit("/", 1)[-1]): status for status, method, url in answers}
    assert by_action[("POST", "approve")] == "202" and by_action[("POST", "cancel")] == "200"
    assert sum(1 for s, m, u in answers if m == "POST" and u.endswith("/runs")) == 3
