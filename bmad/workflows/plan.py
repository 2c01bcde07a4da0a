"""The dependency graph of a workflow run: which steps may start now, and what each one is sent.

A step is ready when it is pending and every artifact it consumes exists, so
steps that do not depend on each other run side by side rather than in list
order. A ready step with ``"gate": "approval"`` waits for an approval, but
only in a run started with ``"approvals": true``.
"""

from ..catalog.prompts import build_messages
from ..gateway.chat import tool_model


def ready_steps(steps, states, available, in_flight, gated_ok):
    """Split the pending steps whose inputs all exist into ``(startable, waiting_for_approval)``.

    ``states`` maps step id -> state, ``available`` is the set of artifact and
    input names that exist, ``in_flight`` the ids already running and
    ``gated_ok(step)`` whether a gate on ``step`` is passed.
    """
    startable, waiting = [], []
    for step in steps:
        if states.get(step["id"]) != "pending" or step["id"] in in_flight:
            continue
        if not all(name in available for name in step["consumes"]):
            continue
        if step.get("gate") == "approval" and not gated_ok(step):
            waiting.append(step)
        else:
            startable.append(step)
    return startable, waiting


def step_messages(tool, step, inputs, artifacts):
    """The messages for one step: the tool's instructions, then the run's inputs and each consumed artifact."""
    context = {name: artifacts[name] for name in step["consumes"] if name in artifacts and name not in inputs}
    return build_messages(tool, inputs, context)


def step_model(config, tool_id, run_model):
    """The model a step asks for: the one rule of ``gateway.chat.tool_model``, with no request model."""
    return tool_model(config.get("tools", {}), tool_id, None, run_model)
