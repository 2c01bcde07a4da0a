"""The event-recording interface every part of the service reports through.

Parts call ``app.events.record(type, **fields)``; it must never block or
raise. The analytics engine implements it; ``NullEvents`` stands in when
analytics is disabled.
"""


class NullEvents:
    """Accepts events and drops them."""

    enabled = False

    def record(self, type, **fields):
        """Record one event of ``type`` with ``fields`` (dropped here)."""

    def stats(self):
        return {"enabled": False}
