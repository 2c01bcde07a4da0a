"""A small thread-safe metrics registry and the Prometheus text format (0.0.4).

Counters, gauges and histograms, each optionally labelled. One lock per
family guards its values; ``render`` copies the values under the lock and
formats outside it. Label values are escaped (backslash, newline, quote) and
label names sorted, with ``le`` last on histogram buckets. A family caps its
number of series: once full, new label combinations are folded into one
series whose label values are all ``other``. A ``CollectedCounter`` is a
counter whose total is kept elsewhere (the kernel's CPU time) and copied in
by a collector before each scrape.
"""

import bisect
import math
import re
import threading

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)
MAX_SERIES = 1000

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


def format_value(value):
    """A sample value the way Prometheus writes it (``+Inf``, ``NaN``, ``7.0``)."""
    value = float(value)
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:
        return "NaN"
    return repr(value)


def escape_label(value):
    """Escape a label value: backslash, then newline, then double quote."""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text):
    """Escape HELP text: backslash, then newline (quotes stay as they are)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class _Family:
    kind = "untyped"

    def __init__(self, name, help, labelnames=(), max_series=MAX_SERIES):
        if not _METRIC_NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        labelnames = tuple(labelnames)
        for label in labelnames:
            # names starting with "__" are reserved for Prometheus itself
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"{name}: invalid label name {label!r}")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"{name}: duplicate label names in {labelnames}")
        self.name = name
        self.help = help
        self.labelnames = labelnames
        self.max_series = max_series
        self._lock = threading.Lock()
        self._series = {}
        self._order = sorted(range(len(self.labelnames)), key=lambda i: self.labelnames[i])
        if not self.labelnames and not self._starts_empty():
            self._series[()] = self._new_value()

    def _new_value(self):
        return [0.0]

    def _starts_empty(self):
        return False

    def _key(self, labels):
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {sorted(labels)}")
        try:
            return tuple(str(labels[n]) for n in self.labelnames)
        except KeyError:
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {sorted(labels)}") from None

    def _value(self, key):
        value = self._series.get(key)
        if value is None:
            if len(self._series) >= self.max_series:
                key = ("other",) * len(self.labelnames)
                value = self._series.get(key)
            if value is None:
                value = self._series[key] = self._new_value()
        return value

    def _labels_text(self, key, extra=""):
        parts = [f'{self.labelnames[i]}="{escape_label(key[i])}"' for i in self._order]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""

    def sample_names(self):
        """The names this family's samples use in the exposition."""
        return (self.name,)

    def snapshot(self):
        """A copy of every series' value, taken under the lock."""
        with self._lock:
            return {k: list(v) for k, v in self._series.items()}

    def render(self, out):
        """Append this family's text (HELP, TYPE, then its series in label order) to ``out``."""
        out.append(f"# HELP {self.name} {escape_help(self.help)}\n# TYPE {self.name} {self.kind}\n")
        for key, value in sorted(self.snapshot().items()):
            self._render_series(out, key, value)

    def _render_series(self, out, key, value):
        out.append(f"{self.name}{self._labels_text(key)} {format_value(value[0])}\n")


def _check_counter_name(name):
    if not name.endswith("_total"):
        raise ValueError(f"counter {name!r}: counter names end in _total")


class Counter(_Family):
    """A monotonically increasing count; its name ends in ``_total``."""

    kind = "counter"

    def __init__(self, name, help, labelnames=(), max_series=MAX_SERIES):
        _check_counter_name(name)
        super().__init__(name, help, labelnames, max_series)

    def inc(self, amount=1.0, **labels):
        """Add ``amount`` (not negative) to the series with these labels."""
        if amount < 0:
            raise ValueError("counters only go up")
        key = self._key(labels)
        with self._lock:
            self._value(key)[0] += amount

    def value(self, **labels):
        """The current value of the series with these labels (0 when it has none)."""
        with self._lock:
            return self._series.get(self._key(labels), [0.0])[0]


class _Settable(_Family):
    def set(self, value, **labels):
        """Set the series with these labels to ``value``."""
        key = self._key(labels)
        with self._lock:
            self._value(key)[0] = float(value)

    def remove(self, **labels):
        """Drop the series with these labels from the exposition."""
        with self._lock:
            self._series.pop(self._key(labels), None)

    def value(self, **labels):
        """The current value of the series with these labels (0 when it has none)."""
        with self._lock:
            return self._series.get(self._key(labels), [0.0])[0]


class Gauge(_Settable):
    """A value that goes up and down."""

    kind = "gauge"

    def inc(self, amount=1.0, **labels):
        """Add ``amount`` (may be negative) to the series with these labels."""
        key = self._key(labels)
        with self._lock:
            self._value(key)[0] += amount

    def dec(self, amount=1.0, **labels):
        """Subtract ``amount`` from the series with these labels."""
        self.inc(-amount, **labels)


class CollectedCounter(_Settable):
    """A counter kept elsewhere (the kernel's CPU time, say) and copied in by a collector.

    A collector registered with ``Registry.add_collector`` calls ``set`` with
    the current total before each scrape, or ``remove`` when it cannot read
    it, so the series is absent rather than stale. Code that counts events
    itself uses ``Counter.inc`` instead. An unlabelled one has no sample until
    its first ``set``.
    """

    kind = "counter"

    def __init__(self, name, help, labelnames=(), max_series=MAX_SERIES):
        _check_counter_name(name)
        super().__init__(name, help, labelnames, max_series)

    def _starts_empty(self):
        return True

    def set(self, total, **labels):
        """Set the series with these labels to the current ``total`` (not negative)."""
        if float(total) < 0:
            raise ValueError(f"{self.name}: a counter's total cannot be negative, got {total}")
        super().set(total, **labels)


class Histogram(_Family):
    """Observations counted into cumulative ``le`` buckets, with sum and count."""

    kind = "histogram"

    def __init__(self, name, help, labelnames=(), buckets=DEFAULT_BUCKETS, max_series=MAX_SERIES):
        if "le" in labelnames:
            raise ValueError(f"histogram {name!r}: 'le' is the bucket label and cannot be a label name")
        self.buckets = tuple(sorted({float(b) for b in buckets if b != math.inf}))
        if not self.buckets or any(b != b for b in self.buckets):
            raise ValueError(f"histogram {name!r}: needs at least one finite bucket bound")
        super().__init__(name, help, labelnames, max_series)

    def _new_value(self):
        # per-bucket (non-cumulative) counts, then the +Inf overflow, then sum and count
        return [0] * (len(self.buckets) + 1) + [0.0, 0]

    def observe(self, amount, **labels):
        """Count one observation of ``amount`` into its bucket, the sum and the count."""
        key = self._key(labels)
        index = bisect.bisect_left(self.buckets, amount)
        with self._lock:
            value = self._value(key)
            value[index] += 1
            value[-2] += amount
            value[-1] += 1

    def sample_names(self):
        """The ``_bucket``, ``_sum`` and ``_count`` names."""
        return tuple(self.name + suffix for suffix in ("_bucket", "_sum", "_count"))

    def _render_series(self, out, key, value):
        cumulative = 0
        n = len(self.buckets)
        for i, bound in enumerate(self.buckets + (math.inf,)):
            cumulative += value[i]
            le = f'le="{format_value(bound)}"'
            out.append(f"{self.name}_bucket{self._labels_text(key, le)} {format_value(cumulative)}\n")
        labels = self._labels_text(key)
        out.append(f"{self.name}_sum{labels} {format_value(value[n + 1])}\n")
        out.append(f"{self.name}_count{labels} {format_value(value[n + 2])}\n")


class Registry:
    """The metric families of one app, and collectors run before each scrape."""

    def __init__(self):
        self._families = {}
        self._collectors = []
        self._lock = threading.Lock()

    def _add(self, family):
        with self._lock:
            taken = {n for f in self._families.values() for n in (f.name,) + f.sample_names()}
            clash = ({family.name} | set(family.sample_names())) & taken
            if clash:
                raise ValueError(f"metric {family.name} is registered twice (or clashes with {sorted(clash)})")
            self._families[family.name] = family
        return family

    def counter(self, name, help, labelnames=(), max_series=MAX_SERIES):
        """Register and return a ``Counter``; ``name`` must end in ``_total``."""
        return self._add(Counter(name, help, labelnames, max_series))

    def gauge(self, name, help, labelnames=(), max_series=MAX_SERIES):
        """Register and return a ``Gauge``."""
        return self._add(Gauge(name, help, labelnames, max_series))

    def histogram(self, name, help, labelnames=(), buckets=DEFAULT_BUCKETS, max_series=MAX_SERIES):
        """Register and return a ``Histogram`` with these upper bucket bounds (``+Inf`` is implied)."""
        return self._add(Histogram(name, help, labelnames, buckets, max_series))

    def collected_counter(self, name, help, labelnames=(), max_series=MAX_SERIES):
        """Register and return a counter whose total a collector copies in (see ``CollectedCounter``)."""
        return self._add(CollectedCounter(name, help, labelnames, max_series))

    def get(self, name):
        """The registered family called ``name``, or None."""
        return self._families.get(name)

    def add_collector(self, collect):
        """Call ``collect()`` before each scrape (to refresh gauges read from elsewhere)."""
        self._collectors.append(collect)

    def render(self):
        """The whole registry in the Prometheus text format, as bytes."""
        for collect in list(self._collectors):
            collect()
        with self._lock:
            families = sorted(self._families.values(), key=lambda f: f.name)
        out = []
        for family in families:
            family.render(out)
        return "".join(out).encode("utf-8")
