"""Turns a tool and a caller's inputs into the chat messages a run sends."""

from ..errors import BadRequest


def normalize_inputs(tool, raw):
    """Validate a run body's ``input`` against the tool's declared inputs.

    ``raw`` may be text (it fills the tool's first declared input) or an
    object of field -> text. Returns a dict; 400 names each bad field.
    """
    declared = [item["name"] for item in tool["inputs"]]
    if raw is None:
        values = {}
    elif isinstance(raw, str):
        if not declared:
            raise BadRequest(f"tool '{tool['id']}' takes no inputs", param="input")
        values = {declared[0]: raw}
    elif isinstance(raw, dict):
        values = {}
        for name, value in raw.items():
            if name not in declared:
                raise BadRequest(f"unknown input field 'input.{name}' for tool '{tool['id']}'; "
                                 f"it takes: {', '.join(declared) or 'nothing'}", param=f"input.{name}")
            if not isinstance(value, str):
                raise BadRequest(f"input field 'input.{name}' must be a string", param=f"input.{name}")
            values[name] = value
    else:
        raise BadRequest("field 'input' must be a string or an object of strings", param="input")
    missing = [item["name"] for item in tool["inputs"] if item["required"] and not values.get(item["name"], "").strip()]
    if missing:
        raise BadRequest(f"missing required input(s) for tool '{tool['id']}': {', '.join(missing)}",
                         param=f"input.{missing[0]}")
    return values


def normalize_context(raw):
    """Validate ``context``: an object of artifact name -> text."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("field 'context' must be an object of artifact name -> text", param="context")
    for name, value in raw.items():
        if not isinstance(value, str):
            raise BadRequest(f"context artifact 'context.{name}' must be a string", param=f"context.{name}")
    return raw


def build_messages(tool, inputs, context):
    """The system and user messages for one run of ``tool``."""
    sections = []
    if inputs:
        sections.append("## Inputs\n\n" + "\n\n".join(f"### {name}\n{value}" for name, value in inputs.items()))
    if context:
        sections.append("## Context artifacts\n\n" + "\n\n".join(f"### {name}\n{text}" for name, text in context.items()))
    if not sections:
        sections.append("No inputs were given; work from the instructions alone and state your assumptions.")
    return [{"role": "system", "content": tool["instructions"]},
            {"role": "user", "content": "\n\n".join(sections)}]


def run_messages(tool, body):
    """Validate a run/preview body and return ``(inputs, context, messages)``."""
    unknown = set(body) - {"input", "context", "model", "stream"}
    if unknown:
        raise BadRequest(f"unknown field '{sorted(unknown)[0]}'; a tool run takes input, context and model",
                         param=sorted(unknown)[0])
    inputs = normalize_inputs(tool, body.get("input"))
    context = normalize_context(body.get("context"))
    return inputs, context, build_messages(tool, inputs, context)
