"""Per-entity reports: one user, one workflow, one provider over the last ``days`` days.

Counts and sums that the daily rollup holds come from it; what it cannot
hold (percentiles, per-step figures, a user's tools) comes from the raw
events through the entity's own index. The caller has already checked that
the entity may be reported on; these functions return None for an entity
with no data where that means "never seen". Every query is parameterized.
"""

from .reports import WORKFLOW_TYPES, ZERO, DayRange, date_of, iso, mean, percentile, provider_counts, ratio
from .rollup import STEP_SEP

MAX_ROWS = 100  # per list in a report: tools, workflows, steps


def user_report(conn, now, days, user_id):
    """The report for ``user_id``, or None when the user was never seen."""
    seen = conn.execute("SELECT first_seen, max(last_seen, coalesce((SELECT MAX(last_ts) FROM sessions "
                        "WHERE user_id = ?1), 0)) FROM users WHERE user_id = ?1", (user_id,)).fetchone()
    if seen is None:
        return None
    r = DayRange(now, days)
    daily = {day: [0, 0] for day in r.each()}
    requests = errors = 0
    # Each query reads one (user_id, type) slice of the (user_id, type, ts, error) index; the first
    # needs nothing else, so even a user with tens of thousands of requests is an index-only scan.
    for day, count, failed in conn.execute(
            "SELECT CAST(ts / 86400 AS INTEGER), COUNT(*), SUM(error) FROM events "
            "WHERE user_id = ? AND type = 'api_request' AND ts >= ? GROUP BY 1", (user_id, r.start_ts)):
        requests += count
        errors += failed
        if day in daily:
            daily[day][0] += count
            daily[day][1] += failed
    tools = dict(conn.execute(
        "SELECT tool, COUNT(*) FROM events WHERE user_id = ? AND type = 'tool_execution' AND ts >= ? "
        "AND tool IS NOT NULL GROUP BY tool ORDER BY 2 DESC, tool LIMIT ?", (user_id, r.start_ts, MAX_ROWS)).fetchall())
    workflows = dict(conn.execute(
        "SELECT workflow, COUNT(*) FROM events WHERE user_id = ? AND type = 'workflow_started' AND ts >= ? "
        "AND workflow IS NOT NULL GROUP BY workflow ORDER BY 2 DESC, workflow LIMIT ?",
        (user_id, r.start_ts, MAX_ROWS)).fetchall())
    sessions, avg_duration = conn.execute(
        "SELECT COUNT(*), AVG(last_ts - started_ts) FROM sessions WHERE user_id = ? AND started_ts >= ?",
        (user_id, r.start_ts)).fetchone()
    return {
        "user_id": user_id, "days": days, "requests": requests, "errors": errors,
        "error_rate": ratio(errors, requests),
        "sessions": {"count": sessions, "avg_duration_seconds": round(avg_duration or 0.0, 3)},
        "tools": tools,
        "workflows": workflows,
        "first_seen": iso(seen[0]), "last_seen": iso(seen[1]),
        "daily_activity": [{"date": date_of(day), "requests": v[0], "errors": v[1]}
                           for day, v in sorted(daily.items())],
    }


def _rollup_by_day(conn, dim, key, r, types):
    """``{day: {type: [events, errors, prompt, completion, cost, latency_sum, latency_count, total_tokens]}}``."""
    marks = ", ".join("?" for _ in types)
    out = {}
    for day, type, *values in conn.execute(
            f"SELECT day, type, events, errors, prompt_tokens, completion_tokens, cost_usd, latency_sum, "
            f"latency_count, total_tokens FROM daily_rollup WHERE dim = ? AND day BETWEEN ? AND ? "
            f"AND type IN ({marks}) "
            f"AND key = ?", (dim, r.first, r.last, *types, key)):
        out.setdefault(day, {})[type] = values
    return out


def _totals(by_day, type):
    total = list(ZERO)
    for by_type in by_day.values():
        for i, v in enumerate(by_type.get(type, ZERO)):
            total[i] += v
    return total


def workflow_report(conn, now, days, workflow, step_order=()):
    """The report for one workflow (the caller checks that the catalog has it); steps in ``step_order``."""
    r = DayRange(now, days)
    types = WORKFLOW_TYPES
    by_day = _rollup_by_day(conn, "workflow", workflow, r, types)
    started, completed, failed, cancelled = (_totals(by_day, t) for t in types)
    durations = [row[0] for row in conn.execute(
        "SELECT latency_ms FROM events WHERE workflow = ? AND type IN ('workflow_completed', 'workflow_failed') "
        "AND ts >= ? AND latency_ms IS NOT NULL ORDER BY latency_ms", (workflow, r.start_ts))]
    # Time at approval gates is the approvers', not the workflow's: reported apart from the duration.
    waits = [row[0] for row in conn.execute(
        "SELECT json_extract(extra, '$.approval_wait_ms') FROM events WHERE workflow = ? AND type IN "
        "('workflow_completed', 'workflow_failed', 'workflow_cancelled') AND ts >= ? AND extra IS NOT NULL",
        (workflow, r.start_ts)) if isinstance(row[0], (int, float))]
    prefix = workflow + STEP_SEP
    steps = []
    for key, count, failures, prompt, completion, cost, lat_sum, lat_n, total in conn.execute(
            "SELECT key, SUM(events), SUM(errors), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_usd), "
            "SUM(latency_sum), SUM(latency_count), SUM(total_tokens) FROM daily_rollup WHERE dim = 'step' "
            "AND day BETWEEN ? AND ? AND type = 'workflow_step_completed' AND key >= ? AND key < ? GROUP BY key",
            (r.first, r.last, prefix, workflow + chr(ord(STEP_SEP) + 1))):
        step, tool = key[len(prefix):].rsplit(STEP_SEP, 1)
        steps.append({"step": step, "tool": tool or None, "executions": count, "failures": failures,
                      "avg_duration_ms": mean(lat_sum, lat_n), "prompt_tokens": prompt,
                      "completion_tokens": completion, "total_tokens": total, "cost_usd": round(cost, 6)})
    order = {step_id: i for i, step_id in enumerate(step_order)}
    steps.sort(key=lambda s: (order.get(s["step"], len(order)), s["step"], s["tool"] or ""))
    del steps[MAX_ROWS:]
    ended = completed[0] + failed[0]
    return {
        "workflow": workflow, "days": days, "executions": started[0], "completed": completed[0],
        "failed": failed[0], "cancelled": cancelled[0], "success_rate": ratio(completed[0], ended),
        "avg_duration_ms": mean(completed[5] + failed[5], completed[6] + failed[6]),
        "p95_duration_ms": percentile(durations, 0.95),
        "avg_approval_wait_ms": mean(sum(waits), len(waits)),
        "prompt_tokens": sum(s["prompt_tokens"] for s in steps),
        "completion_tokens": sum(s["completion_tokens"] for s in steps),
        "total_tokens": sum(s["total_tokens"] for s in steps),
        "cost_usd": round(float(sum(s["cost_usd"] for s in steps)), 6),
        "steps": steps,
        "daily_trend": [{"date": date_of(day), "started": by_day.get(day, {}).get(types[0], ZERO)[0],
                         "completed": by_day.get(day, {}).get(types[1], ZERO)[0],
                         "failed": by_day.get(day, {}).get(types[2], ZERO)[0],
                         "cancelled": by_day.get(day, {}).get(types[3], ZERO)[0]} for day in r.each()],
    }


def _provider_p95(conn, provider, start_ts):
    """Nearest-rank p95 latency of a provider's attempts since ``start_ts``.

    Both queries read only the covering (provider, type, ts, latency_ms) index, and the second
    asks for the value ``n - rank`` from the top, so the sorter keeps 5% of the rows, not all.
    """
    where = "WHERE provider = ? AND type = 'provider_request' AND ts >= ? AND latency_ms IS NOT NULL"
    n = conn.execute(f"SELECT COUNT(*) FROM events {where}", (provider, start_ts)).fetchone()[0]
    if not n:
        return 0.0
    rank = max(1, -(-95 * n // 100))
    row = conn.execute(f"SELECT latency_ms FROM events {where} ORDER BY latency_ms DESC LIMIT 1 OFFSET ?",
                       (provider, start_ts, n - rank)).fetchone()
    return round(row[0], 3) if row else 0.0


def provider_report(conn, now, days, provider):
    """The report for one provider (the caller checks that it is configured)."""
    r = DayRange(now, days)
    types = ("provider_request", "provider_failure", "provider_failover")
    by_day = _rollup_by_day(conn, "provider", provider, r, types)
    attempts, failures, ok, failover = provider_counts(*(_totals(by_day, t) for t in types))
    p95 = _provider_p95(conn, provider, r.start_ts)
    # '+provider' keeps the planner on the (type, ts) index: circuit changes are few, provider rows many.
    openings = conn.execute(
        "SELECT COUNT(*) FROM events WHERE type = 'circuit_state_changed' AND ts >= ? AND +provider = ? "
        "AND lower(outcome) = 'open'", (r.start_ts, provider)).fetchone()[0]
    daily = []
    for day in r.each():
        d_requests, d_failures, d_ok, _ = provider_counts(*(by_day.get(day, {}).get(t, ZERO) for t in types))
        daily.append({"date": date_of(day), "requests": d_requests, "failures": d_failures,
                      "prompt_tokens": d_ok[2], "completion_tokens": d_ok[3], "cost_usd": round(d_ok[4], 6)})
    return {
        "provider": provider, "days": days, "requests": attempts, "failures": failures,
        "success_rate": ratio(attempts - failures, attempts),
        "avg_latency_ms": mean(ok[5], ok[6]), "p95_latency_ms": p95,
        "prompt_tokens": ok[2], "completion_tokens": ok[3], "total_tokens": ok[2] + ok[3],
        "cost_usd": round(ok[4], 6), "failovers": failover[0], "circuit_openings": openings,
        "daily_trend": daily,
    }


def own_usage(conn, since, user_id):
    """What ``user_id`` did since ``since``: requests, errors, mean latency, and per provider the
    attempts, failures, tokens and cost (what a non-admin may see of the shared figures)."""
    requests, errors, latency = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(error), 0), AVG(latency_ms) FROM events "
        "WHERE user_id = ? AND type = 'api_request' AND ts >= ?", (user_id, since)).fetchone()
    providers = {}
    for provider, count, failed, prompt, completion, cost in conn.execute(
            "SELECT provider, COUNT(*), SUM(error), SUM(COALESCE(prompt_tokens, 0)), "
            "SUM(COALESCE(completion_tokens, 0)), SUM(COALESCE(cost_usd, 0)) FROM events "
            "WHERE user_id = ? AND type = 'provider_request' AND ts >= ? AND provider IS NOT NULL "
            "GROUP BY provider ORDER BY provider LIMIT ?", (user_id, since, MAX_ROWS)):
        providers[provider] = {"requests": count, "failures": failed, "prompt_tokens": prompt,
                               "completion_tokens": completion, "cost_usd": round(cost, 8)}
    return {"requests": requests, "errors": errors, "avg_latency_ms": round(latency or 0.0, 3),
            "providers": providers}
