"""Running an app: bind, serve in a thread, and stop gracefully.

Methods for the caller: ``start()`` (binds; ``port`` is then the real
port), ``stop()`` (drain, run shutdown hooks, close), ``url``.
"""

import threading
import time

from .http.server import Server


class Service:
    """One app served on one listening socket."""

    def __init__(self, app):
        self.app = app
        self.server = None
        self._thread = None
        self._stopped = False

    @property
    def port(self):
        return self.server.port

    @property
    def url(self):
        host = self.server.server_address[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def start(self):
        """Bind and start serving in a background thread; raises OSError when the port is taken."""
        cfg = self.app.config["server"]
        self.server = Server(self.app, cfg["host"], cfg["port"])
        self.app.metrics.add_collector(lambda: self.app.http_in_flight.set(self.server.in_flight))
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="bmad-accept", daemon=True)
        self._thread.start()
        self.app.logger.info("listening", host=cfg["host"], port=self.port, url=self.url)
        return self

    def stop(self, drain_seconds=None):
        """Drain in-flight requests, shut the app's parts down, close. Returns True when nothing was cut off."""
        if self._stopped:
            return True
        self._stopped = True
        seconds = self.app.config.at("server.drain_seconds") if drain_seconds is None else drain_seconds
        began = time.monotonic()
        self.app.stop_deadline = began + seconds
        self.app.logger.info("draining", in_flight=self.server.in_flight, drain_seconds=seconds)
        try:
            self.app.drain()
        except Exception as e:
            self.app.logger.error("drain failed", error=f"{type(e).__name__}: {e}")
        finished = self.server.drain(seconds)
        self.app.shutdown()
        self.server.server_close()
        self._thread.join(timeout=2)
        self.app.logger.info("stopped", drained=finished, seconds=round(time.monotonic() - began, 3))
        return finished

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop(drain_seconds=2)
