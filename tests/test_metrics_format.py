"""Exact bytes of the Prometheus text exposition (0.0.4) that bmad.ops.metrics writes.

The text format is a contract with every scraper, so these tests compare
whole outputs byte for byte rather than searching for substrings.
"""

import math
import threading

import pytest

from bmad.ops import process_metrics
from bmad.ops.metrics import CONTENT_TYPE, MAX_SERIES, Registry, escape_label, format_value


def test_content_type_is_the_0_0_4_text_format():
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_every_family_prints_help_and_type_before_its_first_sample():
    r = Registry()
    r.counter("a_requests_total", "Requests.", ("route",))
    r.gauge("b_entries", "Entries.", ("cache",))
    r.histogram("c_duration_seconds", "Durations.", ("route",), buckets=(1.0,))
    r.counter("d_plain_total", "An unlabelled counter starts at zero.")
    r.gauge("e_plain", "An unlabelled gauge starts at zero.")
    r.histogram("f_plain_seconds", "An unlabelled histogram starts empty.", buckets=(1.0,))
    assert r.render() == (
        b"# HELP a_requests_total Requests.\n"
        b"# TYPE a_requests_total counter\n"
        b"# HELP b_entries Entries.\n"
        b"# TYPE b_entries gauge\n"
        b"# HELP c_duration_seconds Durations.\n"
        b"# TYPE c_duration_seconds histogram\n"
        b"# HELP d_plain_total An unlabelled counter starts at zero.\n"
        b"# TYPE d_plain_total counter\n"
        b"d_plain_total 0.0\n"
        b"# HELP e_plain An unlabelled gauge starts at zero.\n"
        b"# TYPE e_plain gauge\n"
        b"e_plain 0.0\n"
        b"# HELP f_plain_seconds An unlabelled histogram starts empty.\n"
        b"# TYPE f_plain_seconds histogram\n"
        b'f_plain_seconds_bucket{le="1.0"} 0.0\n'
        b'f_plain_seconds_bucket{le="+Inf"} 0.0\n'
        b"f_plain_seconds_sum 0.0\n"
        b"f_plain_seconds_count 0.0\n"
    )


def test_counter_labels_are_sorted_and_series_ordered():
    r = Registry()
    c = r.counter("http_requests_total", "HTTP requests.", ("status", "method", "route"))
    c.inc(status="200", method="GET", route="/b")
    c.inc(2, status="200", method="GET", route="/a")
    c.inc(0.5, status="500", method="POST", route="/a")
    assert c.value(status="200", method="GET", route="/a") == 2
    assert r.render() == (
        b"# HELP http_requests_total HTTP requests.\n"
        b"# TYPE http_requests_total counter\n"
        b'http_requests_total{method="GET",route="/a",status="200"} 2.0\n'
        b'http_requests_total{method="GET",route="/b",status="200"} 1.0\n'
        b'http_requests_total{method="POST",route="/a",status="500"} 0.5\n'
    )


def test_counter_names_end_in_total_and_counters_only_go_up():
    r = Registry()
    with pytest.raises(ValueError, match="_total"):
        r.counter("requests", "No suffix.")
    c = r.counter("requests_total", "Requests.")
    with pytest.raises(ValueError, match="only go up"):
        c.inc(-1)
    assert c.value() == 0


def test_histogram_buckets_are_cumulative_with_inf_equal_to_count():
    r = Registry()
    h = r.histogram("op_duration_seconds", "Durations.", ("route",), buckets=(1.0, 0.1))
    for amount in (0.05, 0.1, 0.5, 3.0):  # 0.1 sits on a bound: le is "less or equal"
        h.observe(amount, route="/x")
    assert r.render() == (
        b"# HELP op_duration_seconds Durations.\n"
        b"# TYPE op_duration_seconds histogram\n"
        b'op_duration_seconds_bucket{route="/x",le="0.1"} 2.0\n'
        b'op_duration_seconds_bucket{route="/x",le="1.0"} 3.0\n'
        b'op_duration_seconds_bucket{route="/x",le="+Inf"} 4.0\n'
        b'op_duration_seconds_sum{route="/x"} 3.65\n'
        b'op_duration_seconds_count{route="/x"} 4.0\n'
    )


def test_default_buckets_span_sub_millisecond_to_a_minute():
    r = Registry()
    h = r.histogram("call_seconds", "Calls.")
    assert h.buckets[0] <= 0.0005 and h.buckets[-1] >= 60.0


def test_label_values_escape_backslash_quote_and_newline():
    r = Registry()
    g = r.gauge("weird", "Weird labels.", ("v",))
    g.set(1, v='a\\b"c\nd')
    assert r.render() == (
        b"# HELP weird Weird labels.\n"
        b"# TYPE weird gauge\n"
        b'weird{v="a\\\\b\\"c\\nd"} 1.0\n'
    )
    assert escape_label("\\n") == "\\\\n"  # a literal backslash-n is not a newline


def test_help_escapes_backslash_and_newline_but_not_quotes():
    r = Registry()
    r.gauge("g", 'Line one\nsays "C:\\temp".')
    assert r.render() == (
        b'# HELP g Line one\\nsays "C:\\\\temp".\n'
        b"# TYPE g gauge\n"
        b"g 0.0\n"
    )


def test_special_values_are_written_the_prometheus_way():
    r = Registry()
    g = r.gauge("special", "Special values.", ("k",))
    g.set(math.inf, k="a")
    g.set(-math.inf, k="b")
    g.set(math.nan, k="c")
    g.set(7, k="d")
    assert r.render() == (
        b"# HELP special Special values.\n"
        b"# TYPE special gauge\n"
        b'special{k="a"} +Inf\n'
        b'special{k="b"} -Inf\n'
        b'special{k="c"} NaN\n'
        b'special{k="d"} 7.0\n'
    )
    assert [format_value(v) for v in (0, 1e-05, 12345678901234.5, 2**53)] == [
        "0.0", "1e-05", "12345678901234.5", "9007199254740992.0"]


def test_series_cap_folds_new_label_sets_into_other():
    r = Registry()
    c = r.counter("capped_total", "Capped.", ("route", "user"), max_series=2)
    c.inc(route="/a", user="u1")
    c.inc(route="/b", user="u2")
    for i in range(5):
        c.inc(route=f"/r{i}", user=f"x{i}")
    c.inc(route="/a", user="u1")  # existing series keep counting
    assert r.render() == (
        b"# HELP capped_total Capped.\n"
        b"# TYPE capped_total counter\n"
        b'capped_total{route="/a",user="u1"} 2.0\n'
        b'capped_total{route="/b",user="u2"} 1.0\n'
        b'capped_total{route="other",user="other"} 5.0\n'
    )
    assert MAX_SERIES >= 100


def test_histogram_series_cap_folds_into_other():
    r = Registry()
    h = r.histogram("capped_seconds", "Capped.", ("route",), buckets=(1.0,), max_series=1)
    h.observe(0.5, route="/a")
    h.observe(2.0, route="/b")
    h.observe(2.0, route="/c")
    assert r.render() == (
        b"# HELP capped_seconds Capped.\n"
        b"# TYPE capped_seconds histogram\n"
        b'capped_seconds_bucket{route="/a",le="1.0"} 1.0\n'
        b'capped_seconds_bucket{route="/a",le="+Inf"} 1.0\n'
        b'capped_seconds_sum{route="/a"} 0.5\n'
        b'capped_seconds_count{route="/a"} 1.0\n'
        b'capped_seconds_bucket{route="other",le="1.0"} 0.0\n'
        b'capped_seconds_bucket{route="other",le="+Inf"} 2.0\n'
        b'capped_seconds_sum{route="other"} 4.0\n'
        b'capped_seconds_count{route="other"} 2.0\n'
    )


def test_gauge_set_inc_dec_remove():
    r = Registry()
    g = r.gauge("depth", "Depth.", ("q",))
    g.set(5, q="a")
    g.inc(q="a")
    g.dec(3, q="a")
    g.inc(q="b")
    assert g.value(q="a") == 3
    g.remove(q="b")
    assert r.render() == b'# HELP depth Depth.\n# TYPE depth gauge\ndepth{q="a"} 3.0\n'


def test_collected_counter_has_no_sample_until_set_and_none_after_remove():
    r = Registry()
    cpu = r.collected_counter("cpu_seconds_total", "CPU.")
    assert r.render() == b"# HELP cpu_seconds_total CPU.\n# TYPE cpu_seconds_total counter\n"
    cpu.set(1.25)
    assert cpu.value() == 1.25
    assert r.render() == b"# HELP cpu_seconds_total CPU.\n# TYPE cpu_seconds_total counter\ncpu_seconds_total 1.25\n"
    cpu.remove()
    assert r.render() == b"# HELP cpu_seconds_total CPU.\n# TYPE cpu_seconds_total counter\n"
    with pytest.raises(ValueError, match="negative"):
        cpu.set(-1)
    with pytest.raises(ValueError, match="_total"):
        r.collected_counter("cpu_seconds", "No suffix.")


def test_collectors_run_before_each_render_outside_the_registry_lock():
    r = Registry()
    g = r.gauge("refreshed", "Set by a collector.")
    calls = []

    def collect():
        calls.append(1)
        g.set(len(calls))
        r.get("refreshed")  # takes no lock the render holds: would deadlock otherwise

    r.add_collector(collect)
    assert r.render().endswith(b"refreshed 1.0\n")
    assert r.render().endswith(b"refreshed 2.0\n")


def test_labels_must_match_the_declared_names():
    r = Registry()
    c = r.counter("x_total", "X.", ("a", "b"))
    with pytest.raises(ValueError, match="takes labels"):
        c.inc(a="1")
    with pytest.raises(ValueError, match="takes labels"):
        c.inc(a="1", c="2")


@pytest.mark.parametrize("build", [
    lambda r: r.gauge("1bad", "Bad name."),
    lambda r: r.gauge("bad-name", "Bad name."),
    lambda r: r.gauge("ok", "Bad label.", ("bad-label",)),
    lambda r: r.gauge("ok", "Reserved label.", ("__name",)),
    lambda r: r.gauge("ok", "Duplicate label.", ("a", "a")),
    lambda r: r.histogram("ok_seconds", "le is the bucket label.", ("le",)),
    lambda r: r.histogram("ok_seconds", "No finite bucket.", buckets=(math.inf,)),
])
def test_invalid_names_are_refused(build):
    with pytest.raises(ValueError):
        build(Registry())


def test_a_name_is_registered_once_including_histogram_sample_names():
    r = Registry()
    r.histogram("lat_seconds", "Latency.")
    with pytest.raises(ValueError, match="registered twice"):
        r.gauge("lat_seconds", "Again.")
    with pytest.raises(ValueError, match="lat_seconds_count"):
        r.gauge("lat_seconds_count", "Clashes with the histogram's count.")


def test_concurrent_increments_are_not_lost():
    r = Registry()
    c = r.counter("hits_total", "Hits.", ("k",))
    h = r.histogram("lat_seconds", "Latency.", buckets=(0.5,))
    g = r.gauge("level", "Level.")
    threads_n, per_thread = 8, 5000
    start = threading.Barrier(threads_n + 1)

    def work(i):
        start.wait()
        for n in range(per_thread):
            c.inc(k=str(n % 3))
            h.observe(0.25 if n % 2 else 1.0)
            g.inc()

    renders = []
    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    start.wait()
    for _ in range(20):  # scrapes racing the writers must never fail or tear a histogram
        text = r.render().decode()
        renders.append(text)
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    total = threads_n * per_thread
    assert sum(c.value(k=str(k)) for k in range(3)) == total
    assert g.value() == total
    text = r.render().decode()
    assert f'lat_seconds_bucket{{le="0.5"}} {float(total // 2)}\n' in text
    assert f'lat_seconds_bucket{{le="+Inf"}} {float(total)}\n' in text
    assert f"lat_seconds_count {float(total)}\n" in text
    for text in renders:
        inf = next(line for line in text.splitlines() if line.startswith('lat_seconds_bucket{le="+Inf"}'))
        count = next(line for line in text.splitlines() if line.startswith("lat_seconds_count"))
        assert inf.split()[-1] == count.split()[-1]


# --- process metrics from a fake /proc -------------------------------------------

STAT = ("4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 125 0 0 20 0 4 0 12345 "
        "104857600 2560 18446744073709551615 1 1 0 0 0 0 0 16781312 2 0 0 0 17 3 0 0 0 0 0\n")
LIMITS = (
    "Limit                     Soft Limit           Hard Limit           Units     \n"
    "Max cpu time              unlimited            unlimited            seconds   \n"
    "Max open files            1024                 1048576              files     \n"
)


def fake_proc(tmp_path, fds=3):
    proc = tmp_path / "proc"
    (proc / "4242" / "fd").mkdir(parents=True)
    (proc / "stat").write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n")
    (proc / "4242" / "stat").write_text(STAT)
    (proc / "4242" / "limits").write_text(LIMITS)
    for fd in range(fds):
        (proc / "4242" / "fd" / str(fd)).write_text("")
    return proc


def test_process_metrics_from_proc(tmp_path):
    proc = fake_proc(tmp_path)
    r = Registry()
    assert process_metrics.register(r, proc=str(proc), pid=4242, ticks=100, page_size=4096)
    assert r.render() == (
        b"# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
        b"# TYPE process_cpu_seconds_total counter\n"
        b"process_cpu_seconds_total 3.75\n"
        b"# HELP process_max_fds Maximum number of open file descriptors.\n"
        b"# TYPE process_max_fds gauge\n"
        b"process_max_fds 1024.0\n"
        b"# HELP process_open_fds Number of open file descriptors.\n"
        b"# TYPE process_open_fds gauge\n"
        b"process_open_fds 3.0\n"
        b"# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        b"# TYPE process_resident_memory_bytes gauge\n"
        b"process_resident_memory_bytes 10485760.0\n"
        b"# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
        b"# TYPE process_start_time_seconds gauge\n"
        b"process_start_time_seconds 1700000123.45\n"
        b"# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
        b"# TYPE process_virtual_memory_bytes gauge\n"
        b"process_virtual_memory_bytes 104857600.0\n"
    )


def test_process_metrics_refresh_per_scrape_and_drop_what_cannot_be_read(tmp_path):
    proc = fake_proc(tmp_path)
    r = Registry()
    process_metrics.register(r, proc=str(proc), pid=4242, ticks=100, page_size=4096)
    (proc / "4242" / "fd" / "9").write_text("")
    (proc / "4242" / "stat").write_text(STAT.replace(" 250 125 ", " 300 125 "))
    text = r.render().decode()
    assert "process_open_fds 4.0\n" in text and "process_cpu_seconds_total 4.25\n" in text
    (proc / "4242" / "limits").unlink()
    (proc / "4242" / "stat").write_text("garbage")
    text = r.render().decode()
    assert "\nprocess_max_fds " not in text and "\nprocess_cpu_seconds_total " not in text
    assert "\nprocess_resident_memory_bytes " not in text and "\nprocess_virtual_memory_bytes " not in text
    assert "# TYPE process_max_fds gauge\n" in text and "# TYPE process_cpu_seconds_total counter\n" in text
    assert "process_open_fds 4.0\n" in text and "process_start_time_seconds 1700000123.45\n" in text


def test_no_proc_registers_nothing(tmp_path):
    r = Registry()
    assert process_metrics.register(r, proc=str(tmp_path / "missing")) is None
    assert r.render() == b""


def test_unlimited_open_files_is_inf():
    assert process_metrics.parse_max_open_files("Max open files  unlimited  unlimited  files\n") == math.inf


def test_the_real_proc_is_readable_by_this_process():
    import os
    import resource
    if not os.path.exists("/proc/self/stat"):
        pytest.skip("no /proc here")
    r = Registry()
    assert process_metrics.register(r)
    text = r.render().decode()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
                 "process_open_fds", "process_max_fds", "process_start_time_seconds"):
        assert f"\n{name} " in text, name
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert f"\nprocess_max_fds {float(soft)}\n" in text
