"""The standard process metrics (``process_*``), read from Linux's /proc at scrape time.

Names and meanings follow the Prometheus client libraries, so stock
dashboards and alerts work unchanged. Each scrape reads ``/proc/<pid>/stat``
and ``/proc/<pid>/limits`` once and counts ``/proc/<pid>/fd``; the start
time is fixed and read once. Where there is no /proc (macOS), nothing is
registered. A read that fails during a scrape (``EMFILE`` when the process
is out of descriptors, exactly when the numbers matter) drops those samples
from that scrape instead of failing it or reporting stale values.
"""

import math
import os


def _read(path):
    with open(path, "rb") as f:
        return f.read().decode("ascii", "replace")


def parse_stat(text):
    """The fields of a /proc/<pid>/stat line after ``comm``, keyed by their proc(5) number."""
    # comm is in parentheses and may itself contain spaces and ')': split after the last one
    rest = text[text.rindex(")") + 2:].split()
    return {number: rest[number - 3] for number in range(3, 3 + len(rest))}


def parse_max_open_files(text):
    """The soft ``Max open files`` limit from /proc/<pid>/limits (``+Inf`` when unlimited)."""
    for line in text.splitlines():
        if line.startswith("Max open files"):
            soft = line[len("Max open files"):].split()[0]
            return math.inf if soft == "unlimited" else float(soft)
    raise ValueError("no 'Max open files' line in limits")


def parse_boot_time(text):
    """The ``btime`` (boot time, Unix seconds) from /proc/stat."""
    for line in text.splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ValueError("no btime line in /proc/stat")


class ProcessMetrics:
    """Registers the process_* families on a registry and refreshes them before each scrape."""

    def __init__(self, registry, proc="/proc", pid="self", ticks=None, page_size=None):
        self.dir = os.path.join(proc, str(pid))
        self.ticks = ticks or os.sysconf("SC_CLK_TCK")
        self.page_size = page_size or os.sysconf("SC_PAGE_SIZE")
        stat = parse_stat(_read(os.path.join(self.dir, "stat")))
        start = parse_boot_time(_read(os.path.join(proc, "stat"))) + int(stat[22]) / self.ticks
        self.cpu = registry.collected_counter("process_cpu_seconds_total",
                                              "Total user and system CPU time spent in seconds.")
        self.resident = registry.gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
        self.virtual = registry.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.")
        self.open_fds = registry.gauge("process_open_fds", "Number of open file descriptors.")
        self.max_fds = registry.gauge("process_max_fds", "Maximum number of open file descriptors.")
        registry.gauge("process_start_time_seconds",
                       "Start time of the process since unix epoch in seconds.").set(start)
        registry.add_collector(self.collect)

    def collect(self):
        """Read /proc and set every process_* sample; drop the ones that cannot be read now."""
        try:
            stat = parse_stat(_read(os.path.join(self.dir, "stat")))
            self.cpu.set((int(stat[14]) + int(stat[15])) / self.ticks)
            self.virtual.set(int(stat[23]))
            self.resident.set(int(stat[24]) * self.page_size)
        except (OSError, ValueError, KeyError):
            self.cpu.remove()
            self.virtual.remove()
            self.resident.remove()
        try:
            self.max_fds.set(parse_max_open_files(_read(os.path.join(self.dir, "limits"))))
        except (OSError, ValueError):
            self.max_fds.remove()
        try:
            self.open_fds.set(len(os.listdir(os.path.join(self.dir, "fd"))))
        except OSError:
            self.open_fds.remove()


def register(registry, proc="/proc", pid="self", **kwargs):
    """Add the process_* metrics to ``registry``; returns None where /proc cannot be read."""
    try:
        return ProcessMetrics(registry, proc, pid, **kwargs)
    except (OSError, ValueError, KeyError):
        return None
