"""The analytics engine: a sqlite3 event store, sessions, real-time windows and reports.

The composition root builds it (see ``engine.py``). Modules: ``schema``
(event types and columns), ``store`` (the file, migrations, readers),
``recorder`` (``app.events.record``), ``writer`` (the one writing thread),
``rollup`` (daily rollup folding), ``realtime`` (in-memory windows),
``retention`` (purge), ``reports`` and ``entities`` (the report queries).
"""

from .engine import Analytics, register_metrics
from .schema import EVENT_TYPES

__all__ = ["Analytics", "EVENT_TYPES", "register_metrics"]
