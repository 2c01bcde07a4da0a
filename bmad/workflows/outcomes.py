"""How a run ends, in words and numbers: its end event, how messages say what became of it, its durations."""

END_EVENTS = {"succeeded": "workflow_completed", "failed": "workflow_failed", "cancelled": "workflow_cancelled"}
STATE_PHRASES = {"succeeded": "has succeeded", "failed": "has failed", "cancelled": "was cancelled",
                 "queued": "is queued", "running": "is running", "waiting_approval": "is waiting for approval",
                 None: "does not exist"}


def state_phrase(state):
    """How a message says what became of a run: 'has succeeded', 'was cancelled', 'is running'."""
    return STATE_PHRASES.get(state, f"is {state}")


def durations(run, now):
    """``(working seconds, seconds at approval gates)`` of a run, up to ``now`` while it is not final."""
    started = run["started_at"]
    waited = run["approval_wait"] or 0.0
    if run["waiting_since"] is not None:
        waited += max(0.0, now - run["waiting_since"])
    if started is None:
        return 0.0, waited
    end = run["finished_at"] if run["finished_at"] is not None else now
    return max(0.0, end - started - waited), waited
