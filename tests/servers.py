"""Real database servers for the tests, each throwaway, on 127.0.0.1 and a free port.

``redis_process(password)`` starts a redis-server with no persistence and
yields its port (``stop()``/``start()`` on the yielded handle stop and start
it again on the same port); ``postgres_cluster(auth)`` starts a PostgreSQL cluster in a temp directory
(as the ``postgres`` user when the tests run as root, as PostgreSQL refuses
root) and yields ``(port, password)``; the superuser is ``bmad``.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager

from tests.support import eventually
from tests.tooling import _missing, require_tool

PASSWORD = "pg-s3cret-pw"


def free_port():
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name):
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                       None)
    if found is None:
        _missing(f"PostgreSQL's {name} is not installed")
    return found


def _as_owner(cmd):
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextmanager
def postgres_cluster(auth="scram-sha-256", options=()):
    """A running cluster whose local TCP logins use ``auth``; yields ``(port, password)``."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    root = tempfile.mkdtemp(prefix="bmad-pg-")
    data, pwfile = os.path.join(root, "data"), os.path.join(root, "pw")
    with open(pwfile, "w") as f:
        f.write(PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(pwfile, "postgres")
    port = free_port()
    env = dict(os.environ, LC_ALL="C")
    try:
        subprocess.run(_as_owner([initdb, "-D", data, "-U", "bmad", f"--pwfile={pwfile}", f"--auth-host={auth}",
                                  "--auth-local=trust", "-E", "UTF8", "--no-sync"]),
                       check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if auth == "md5":
            # initdb hashes the password with the default method; md5 logins need an md5 hash.
            with open(os.path.join(data, "postgresql.conf"), "a") as conf:
                conf.write("password_encryption = md5\n")
        server_options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} " \
                         + " ".join(options)
        subprocess.run(_as_owner([pg_ctl, "-D", data, "-o", server_options, "-l", os.path.join(root, "log"),
                                  "-w", "-t", "30", "start"]), check=True, env=env, stdout=subprocess.DEVNULL)
        if auth == "md5":
            psql = _pg_bin("psql")
            subprocess.run(_as_owner([psql, "-h", root, "-p", str(port), "-U", "bmad", "-d", "postgres", "-c",
                                      f"ALTER USER bmad PASSWORD '{PASSWORD}'"]),
                           check=True, env=env, stdout=subprocess.DEVNULL)

        def up():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True
            except OSError:
                return False
        eventually(up, timeout=20)
        yield port, PASSWORD
    finally:
        subprocess.run(_as_owner([pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"]), env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


class RedisProcess:
    """A throwaway redis-server; ``port`` stays the same across ``stop()`` and ``start()``."""

    def __init__(self, password):
        self.binary = require_tool("redis-server")
        self.password = password
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="bmad-redis-")
        self.proc = None

    def url(self, db=0):
        """The ``redis://`` URL of database ``db``."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

    def start(self):
        """Start the server and wait until it accepts connections."""
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.workdir, "--requirepass", self.password],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        eventually(lambda: _accepts(self.port), timeout=10)
        return self

    def stop(self):
        """Stop the server (its data is gone: nothing is persisted)."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def redis_process(password="s3cret-pass"):
    """A running ``RedisProcess``, stopped and removed afterwards."""
    server = RedisProcess(password).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)
