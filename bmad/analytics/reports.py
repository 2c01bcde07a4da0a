"""The aggregate report behind ``GET /bmad/analytics``, read from the daily rollup.

Every figure here is a count or a sum, so it comes from ``daily_rollup``
(a few rows per day) rather than the raw events; that keeps a 90-day report
cheap and lets trends outlive the raw-event purge. Days are UTC; a range of
``days`` is today and the ``days - 1`` days before it. Every query is
parameterized: names from the outside are data, never SQL.
"""

import time

DAY_SECONDS = 86400
MAU_DAYS = 30
TOP_ROUTES = 50
TOP_TOOLS = 10
TOP_ENTITIES = 50
# events, errors, prompt tokens, completion tokens, cost, latency sum, latency count, total tokens
ZERO = (0, 0, 0, 0, 0.0, 0.0, 0, 0)


def day_of(ts):
    """The UTC day number of a timestamp."""
    return int(ts // DAY_SECONDS)


def date_of(day):
    """``YYYY-MM-DD`` of a UTC day number."""
    return time.strftime("%Y-%m-%d", time.gmtime(day * DAY_SECONDS))


def iso(ts):
    """An ISO 8601 UTC timestamp, or None."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def ratio(part, whole, digits=4):
    """``part / whole`` rounded, 0.0 when ``whole`` is 0."""
    return round(part / whole, digits) if whole else 0.0


def mean(total, count, digits=3):
    """``total / count`` rounded, 0.0 when ``count`` is 0."""
    return round(total / count, digits) if count else 0.0


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an ascending list, or 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-int(fraction * 1000) * len(sorted_values) // 1000))
    return round(sorted_values[min(rank, len(sorted_values)) - 1], 3)


class DayRange:
    """The ``days`` UTC days ending today: day numbers and the first second."""

    def __init__(self, now, days):
        self.now = now
        self.days = days
        self.last = day_of(now)
        self.first = self.last - days + 1
        self.start_ts = float(self.first * DAY_SECONDS)

    def each(self):
        """Every day number of the range, oldest first."""
        return range(self.first, self.last + 1)


def overview(conn, now, days, real_time):
    """The ``analytics`` object of ``GET /bmad/analytics`` for the last ``days`` days."""
    r = DayRange(now, days)
    span = (r.first, r.last)
    per_type = {}
    daily = {day: [0, 0, 0, 0, 0.0] for day in r.each()}  # requests, errors, prompt, completion, cost
    for day, type, events, errors, prompt, completion, cost, lat_sum, lat_n, total in conn.execute(
            "SELECT day, type, events, errors, prompt_tokens, completion_tokens, cost_usd, latency_sum, "
            "latency_count, total_tokens FROM daily_rollup WHERE dim = 'all' AND day BETWEEN ? AND ?", span):
        t = per_type.setdefault(type, list(ZERO))
        for i, v in enumerate((events, errors, prompt, completion, cost, lat_sum, lat_n, total)):
            t[i] += v
        d = daily.get(day)
        if d is None:
            continue
        if type == "api_request":
            d[0] += events
            d[1] += errors
        elif type == "provider_request":
            d[2] += prompt
            d[3] += completion
            d[4] += cost
    api = per_type.get("api_request", ZERO)
    return {
        "real_time_metrics": real_time,
        "range": {"days": days, "from": date_of(r.first), "to": date_of(r.last)},
        "usage": _usage(conn, r, api, per_type),  # sessions: those that started in the range
        "tools": _tools(conn, span),
        "workflows": _workflows(conn, span, per_type),
        "providers": _providers(conn, span, per_type),
        "business_intelligence": _business(conn, r, api, daily),
    }


def _usage(conn, r, api, per_type):
    users = conn.execute("SELECT COUNT(DISTINCT key) FROM daily_rollup WHERE dim = 'user' AND day BETWEEN ? AND ?",
                         (r.first, r.last)).fetchone()[0]
    # Each session starts with one session_started event, so the rollup already counts them; the
    # sessions table has one row per session and counting 90 days of them cost more than the rest.
    sessions = per_type.get("session_started", ZERO)[0]
    by_route = [{"route": key, "requests": events, "errors": errors, "avg_latency_ms": mean(lat_sum, lat_n)}
                for key, events, errors, lat_sum, lat_n in conn.execute(
                    "SELECT key, SUM(events), SUM(errors), SUM(latency_sum), SUM(latency_count) FROM daily_rollup "
                    "WHERE dim = 'route' AND day BETWEEN ? AND ? AND type = 'api_request' GROUP BY key "
                    "ORDER BY 2 DESC, key LIMIT ?", (r.first, r.last, TOP_ROUTES))]
    return {"requests": api[0], "users": users, "sessions": sessions, "by_route": by_route,
            "avg_latency_ms": mean(api[5], api[6]),
            "events_by_type": {t: v[0] for t, v in sorted(per_type.items())}}


def _grouped(conn, dim, span, types):
    """``{key: {type: [events, errors, prompt, completion, cost, latency_sum, latency_count, total_tokens]}}``."""
    marks = ", ".join("?" for _ in types)
    out = {}
    for key, type, *values in conn.execute(
            f"SELECT key, type, SUM(events), SUM(errors), SUM(prompt_tokens), SUM(completion_tokens), "
            f"SUM(cost_usd), SUM(latency_sum), SUM(latency_count), SUM(total_tokens) FROM daily_rollup "
            f"WHERE dim = ? AND day BETWEEN ? AND ? AND type IN ({marks}) GROUP BY key, type",
            (dim, *span, *types)):
        out.setdefault(key, {})[type] = values
    return out




def _tools(conn, span):
    rows = []
    for tool, by_type in _grouped(conn, "tool", span, ("tool_execution",)).items():
        events, errors, prompt, completion, cost, lat_sum, lat_n, total = by_type["tool_execution"]
        rows.append({"tool": tool, "executions": events, "errors": errors,
                     "success_rate": ratio(events - errors, events), "avg_latency_ms": mean(lat_sum, lat_n),
                     "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total,
                     "cost_usd": round(cost, 6)})
    rows.sort(key=lambda row: (-row["executions"], row["tool"]))
    return {"executions": sum(row["executions"] for row in rows), "top": rows[:TOP_TOOLS]}


# A cancelled run neither succeeded nor failed: it is counted apart and left out of the success rate.
WORKFLOW_TYPES = ("workflow_started", "workflow_completed", "workflow_failed", "workflow_cancelled")


def _workflows(conn, span, per_type):
    rows = []
    for name, by_type in _grouped(conn, "workflow", span, WORKFLOW_TYPES).items():
        started, completed, failed, cancelled = (by_type.get(t, ZERO) for t in WORKFLOW_TYPES)
        ended_n = completed[6] + failed[6]
        rows.append({"workflow": name, "started": started[0], "completed": completed[0], "failed": failed[0],
                     "cancelled": cancelled[0], "success_rate": ratio(completed[0], completed[0] + failed[0]),
                     "avg_duration_ms": mean(completed[5] + failed[5], ended_n)})
    rows.sort(key=lambda row: (-row["started"], row["workflow"]))
    started, completed, failed, cancelled = (per_type.get(t, ZERO)[0] for t in WORKFLOW_TYPES)
    return {"started": started, "completed": completed, "failed": failed, "cancelled": cancelled,
            "success_rate": ratio(completed, completed + failed), "by_workflow": rows[:TOP_ENTITIES]}


def _providers(conn, span, per_type):
    rows = []
    types = ("provider_request", "provider_failure", "provider_failover")
    for name, by_type in _grouped(conn, "provider", span, types).items():
        attempts, failures, ok, failover = provider_counts(by_type.get(types[0], ZERO),
                                                            by_type.get(types[1], ZERO), by_type.get(types[2], ZERO))
        rows.append({"provider": name, "requests": attempts, "failures": failures,
                     "success_rate": ratio(attempts - failures, attempts),
                     "avg_latency_ms": mean(ok[5], ok[6]), "prompt_tokens": ok[2], "completion_tokens": ok[3],
                     "cost_usd": round(ok[4], 6), "failovers": failover[0]})
    rows.sort(key=lambda row: (-row["requests"], row["provider"]))
    attempts, failures, ok, failover = provider_counts(*(per_type.get(t, ZERO) for t in types))
    return {"requests": attempts, "failures": failures, "failovers": failover[0],
            "prompt_tokens": ok[2], "completion_tokens": ok[3], "cost_usd": round(ok[4], 6),
            "by_provider": rows[:TOP_ENTITIES]}


def provider_counts(attempted, failure, failover):
    """``(requests, failures, attempted, failover)``: every upstream attempt is one ``provider_request``
    (flagged as an error when it failed), and a failed one is also described by a ``provider_failure``."""
    return attempted[0], max(attempted[1], failure[0]), attempted, failover


def _business(conn, r, api, daily):
    mau_first = r.last - MAU_DAYS + 1
    first = min(r.first, mau_first)
    per_day = dict(conn.execute("SELECT day, COUNT(*) FROM daily_rollup WHERE dim = 'user' AND day BETWEEN ? AND ? "
                                "GROUP BY day", (first, r.last)).fetchall())
    mau = conn.execute("SELECT COUNT(DISTINCT key) FROM daily_rollup WHERE dim = 'user' AND day BETWEEN ? AND ?",
                       (mau_first, r.last)).fetchone()[0]
    dau = per_day.get(r.last, 0)
    by_type = dict(conn.execute(
        "SELECT key, SUM(events) FROM daily_rollup WHERE dim = 'error_type' AND day BETWEEN ? AND ? "
        "AND type = 'api_request' GROUP BY key ORDER BY 2 DESC, key LIMIT ?", (r.first, r.last, TOP_ROUTES)).fetchall())
    by_route = dict(conn.execute(
        "SELECT key, SUM(errors) FROM daily_rollup WHERE dim = 'route' AND day BETWEEN ? AND ? "
        "AND type = 'api_request' GROUP BY key HAVING SUM(errors) > 0 ORDER BY 2 DESC, key LIMIT ?",
        (r.first, r.last, TOP_ROUTES)).fetchall())
    by_status = dict(conn.execute(
        "SELECT key, SUM(errors) FROM daily_rollup WHERE dim = 'status' AND day BETWEEN ? AND ? "
        "AND type = 'api_request' GROUP BY key HAVING SUM(errors) > 0 ORDER BY key", (r.first, r.last)).fetchall())
    return {
        "dau": dau,
        "mau": mau,
        "dau_mau_ratio": ratio(dau, mau),
        "daily_active_users": [{"date": date_of(day), "users": per_day.get(day, 0)} for day in r.each()],
        "usage_trends": [{"date": date_of(day), "requests": d[0], "errors": d[1], "prompt_tokens": d[2],
                          "completion_tokens": d[3], "cost_usd": round(d[4], 6)} for day, d in sorted(daily.items())],
        "error_analysis": {"requests": api[0], "errors": api[1], "error_rate": ratio(api[1], api[0]),
                           "by_type": by_type, "by_route": by_route, "by_status": by_status},
    }
