"""JSON-lines logging to stderr: one object per line, never a secret."""

import json
import os
import time

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
# What json.dumps(record, default=str, ensure_ascii=False) builds on every call, built once.
_encode = json.JSONEncoder(default=str, ensure_ascii=False).encode


class JsonLogger:
    """Writes one JSON object per line to a file descriptor.

    Each line goes out in one ``os.write`` so lines from concurrent threads
    never interleave and no lock is held while writing.
    """

    def __init__(self, level="info", fd=2, clock=time.time, fields=None):
        self.threshold = LEVELS[level]
        self.fields = dict(fields or {})  # on every line, e.g. the worker number
        self.fd = fd
        self.clock = clock
        self._second = (None, "")  # the last whole second formatted, and its text

    def enabled(self, level):
        """True when lines at ``level`` are written."""
        return LEVELS[level] >= self.threshold

    def log(self, level, msg, **fields):
        """Write one line at ``level`` with ``msg`` and ``fields``."""
        if LEVELS[level] < self.threshold:
            return
        record = {"ts": self._timestamp(self.clock()), "level": level, "msg": msg}
        if self.fields:
            record.update(self.fields)
        record.update(fields)
        self.write((_encode(record) + "\n").encode("utf-8", "replace"))

    def _timestamp(self, ts):
        """ISO 8601 UTC with milliseconds; the date and time part is formatted once a second."""
        second, text = self._second
        if second != int(ts):
            second = int(ts)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)  # one tuple: threads never see half an update
        return f"{text}.{int(ts % 1 * 1000):03d}Z"

    def write(self, data):
        """Write one encoded line (tests override this to capture lines)."""
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:
            pass

    def debug(self, msg, **fields):
        self.log("debug", msg, **fields)

    def info(self, msg, **fields):
        self.log("info", msg, **fields)

    def warning(self, msg, **fields):
        self.log("warning", msg, **fields)

    def error(self, msg, **fields):
        self.log("error", msg, **fields)
