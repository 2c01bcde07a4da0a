"""Command line: parse flags, load config, build the app, serve until a signal."""

import argparse
import json
import os
import signal
import sys
import threading

from . import __version__
from .ops import allocator
from .app import build_app
from .config import load, redacted
from .errors import ConfigError
from .ops.logs import JsonLogger
from .providers.settings import effective_entries
from .service import Service

FLAG_KEYS = {"host": "server.host", "port": "server.port", "data_dir": "data_dir", "log_level": "log_level",
             "catalog_dir": "catalog_dir"}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bmad-api", description="BMAD API: a self-hosted LLM gateway for BMAD workflows.")
    p.add_argument("--config", help="JSON or TOML config file (or BMAD_CONFIG)")
    p.add_argument("--host", help="address to listen on (BMAD_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on, 0 for any free port (BMAD_PORT; default 8080)")
    p.add_argument("--data-dir", help="where databases live (BMAD_DATA_DIR; default ./data)")
    p.add_argument("--catalog-dir", help="a directory of extra or overriding tools/workflows (BMAD_CATALOG_DIR)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="BMAD_LOG_LEVEL; default info")
    p.add_argument("--print-config", action="store_true",
                   help="print the effective config (providers from the environment included), secrets masked, and exit")
    p.add_argument("--version", action="version", version=f"bmad-api {__version__}")
    return p.parse_args(argv)


def prepare_data_dir(path):
    """Create the data directory and make sure it is writable; ConfigError otherwise."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"data_dir {path}: not writable ({e.strerror or e})") from None


def main(argv=None):
    """Run the service; returns the process exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    allocator.cap_arenas()
    allocator.limit_sqlite()
    overrides = {key: getattr(args, flag) for flag, key in FLAG_KEYS.items()}
    fail = JsonLogger("error")
    try:
        config = load(args.config, overrides=overrides)
        if args.print_config:
            shown = dict(config, providers=effective_entries(config["providers"], os.environ))
            print(json.dumps(redacted(shown), indent=2))
            return 0
        prepare_data_dir(config["data_dir"])
        app = build_app(config)
    except ConfigError as e:
        fail.error(f"configuration error: {e}")
        return 2
    service = Service(app)
    try:
        service.start()
    except OSError as e:
        fail.error(f"cannot listen on {config.at('server.host')}:{config.at('server.port')}: {e.strerror or e}")
        return 2
    trimmer = allocator.Trimmer().start()
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            app.logger.warning("second signal: exiting without finishing the drain")
            os._exit(1)
        app.logger.info("signal received", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app.logger.info("started", version=__version__, port=service.port, data_dir=config["data_dir"],
                    open_mode=app.auth.open_mode)
    while not stop.wait(1.0):
        pass
    trimmer.stop()
    service.stop()
    return 0
