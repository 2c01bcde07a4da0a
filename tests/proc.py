"""Run the real entrypoint as a subprocess and find the port it bound."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    """``python bmad_api.py ...`` with its stderr collected; ``port`` once it listens."""

    def __init__(self, *args, env=None, cwd=None, **popen):
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("BMAD_", "OPENAI_", "ANTHROPIC_", "AZURE_"))}
        environ.update(env or {})
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bmad_api.py"), *args], cwd=cwd or ROOT,
                                     env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
        self.lines = []
        self._port = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            m = re.search(r'"port": (\d+)', line)
            if m and self._port is None and '"msg": "started"' in line:
                self._port = int(m.group(1))
                self._ready.set()
        self._ready.set()

    def wait_port(self, timeout=15):
        if not self._ready.wait(timeout) or self._port is None:
            raise AssertionError("server did not start:\n" + "".join(self.lines))
        return self._port

    @property
    def url(self):
        return f"http://127.0.0.1:{self.wait_port()}"

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait(self, timeout=30):
        code = self.proc.wait(timeout)
        self._reader.join(timeout=5)
        return code

    def records(self):
        out = []
        for line in self.lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def run_cli(*args, env=None, timeout=20):
    """Run the entrypoint to completion (for flags like --print-config and startup failures)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("BMAD_", "OPENAI_", "ANTHROPIC_", "AZURE_"))}
    environ.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "bmad_api.py"), *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=timeout)
