"""Many worker processes on one port (``server.workers``), supervised by the parent.

The parent reserves the port with a socket bound under ``SO_REUSEPORT`` that
never listens (so ``port: 0`` resolves once, for every worker), forks the
workers, each of which builds its own app and binds the same port (the kernel
spreads new connections over the listening sockets), restarts a worker that
dies, and on SIGTERM or SIGINT passes the signal on and waits for every drain.

Per-process state (databases, and cache, buckets and de-duplication unless
``state.redis_url`` shares them) would silently multiply limits and split what
each worker shows, so more than one worker needs an explicit
``state.per_process: true``; each worker then keeps its databases in
``{data_dir}/worker-{n}``, so no two processes ever drive the same workflow run.
"""

import os
import signal
import socket
import threading
import time

from .errors import ConfigError

RESTARTS_PER_MINUTE = 5  # a worker dying more often than this is a crash loop: stop rather than spin
STOP_GRACE_SECONDS = 5.0  # beyond server.drain_seconds, before a worker that has not exited is killed


def check(config):
    """Refuse a worker count the configured state cannot serve correctly; ConfigError naming the settings."""
    workers = config.at("server.workers")
    if workers > 1 and not config.at("state.per_process"):
        shared = "shared through state.redis_url" if config.at("state.redis_url") else \
            "per process unless state.redis_url is set"
        raise ConfigError(
            f"server.workers is {workers}, but the databases (analytics, workflow runs) are per process (shared "
            f"storage, storage.postgres_url, is not available yet) and rate limits, cache and de-duplication are "
            f"{shared}: set state.per_process: true to run each worker on its own databases in "
            "{data_dir}/worker-N")
    if workers > 1 and not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("server.workers > 1 needs SO_REUSEPORT, which this platform does not have")


def worker_config(config, number):
    """The config worker ``number`` runs with: its own data directory."""
    worker = type(config)(config)
    worker["data_dir"] = os.path.join(config["data_dir"], f"worker-{number}")
    return worker


class Supervisor:
    """Forks ``server.workers`` processes running ``serve(config, number)`` and keeps them running."""

    def __init__(self, config, serve, logger, *, clock=time.monotonic):
        self.config = config
        self.serve = serve
        self.logger = logger
        self.clock = clock
        self.workers = {}  # pid -> worker number
        self.deaths = []  # monotonic times of unexpected exits, for the crash-loop bound
        self.stop = threading.Event()
        self._reserved = None

    def reserve_port(self):
        """Bind (never listen) the configured port under SO_REUSEPORT; the workers bind the same one."""
        host, port = self.config.at("server.host"), self.config.at("server.port")
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        self._reserved = sock
        self.config["server"]["port"] = sock.getsockname()[1]
        return self.config["server"]["port"]

    def spawn(self, number):
        """Fork worker ``number``; in the child, serve and exit with its code."""
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self._reserved.close()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                code = self.serve(worker_config(self.config, number), number)
            finally:
                os._exit(code)
        self.workers[pid] = number
        self.logger.info("worker started", worker=number, pid=pid)
        return pid

    def run(self):
        """Start the workers and supervise them until a signal; returns the exit code."""
        port = self.reserve_port()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.logger.info("supervising workers", workers=self.config.at("server.workers"), port=port)
        for number in range(1, self.config.at("server.workers") + 1):
            self.spawn(number)
        code = 0
        while not self.stop.wait(0.2):
            if not self._reap_and_restart():
                code = 1
                break
        self._stop_all()
        self._reserved.close()
        return code

    def _on_signal(self, signum, frame):
        if self.stop.is_set():
            for pid in list(self.workers):
                _kill(pid, signal.SIGKILL)
            os._exit(1)
        self.logger.info("signal received", signal=signal.Signals(signum).name)
        self.stop.set()

    def _reap_and_restart(self):
        """Restart workers that exited; False once they die faster than RESTARTS_PER_MINUTE."""
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return True
            number = self.workers.pop(pid, None)
            if number is None or self.stop.is_set():
                continue
            now = self.clock()
            self.deaths = [t for t in self.deaths if now - t < 60] + [now]
            self.logger.error("worker exited; restarting it", worker=number, pid=pid, **_status(status))
            if len(self.deaths) > RESTARTS_PER_MINUTE:
                self.logger.error("workers keep exiting; stopping", restarts_per_minute=RESTARTS_PER_MINUTE)
                return False
            self.spawn(number)
        return True

    def _stop_all(self):
        """SIGTERM every worker, wait for their drains, then SIGKILL what is left."""
        for pid in list(self.workers):
            _kill(pid, signal.SIGTERM)
        deadline = self.clock() + self.config.at("server.drain_seconds") + STOP_GRACE_SECONDS
        while self.workers and self.clock() < deadline:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
                continue
            number = self.workers.pop(pid, None)
            self.logger.info("worker stopped", worker=number, pid=pid, **_status(status))
        for pid in list(self.workers):
            self.logger.error("worker did not stop in time; killing it", pid=pid)
            _kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.workers.clear()


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _status(status):
    if os.WIFSIGNALED(status):
        return {"signal": signal.Signals(os.WTERMSIG(status)).name}
    return {"exit_code": os.waitstatus_to_exitcode(status)}
