"""Turns a tool and a caller's inputs into the chat messages a run sends."""

from ..errors import BadRequest


def check_inputs(declared, values, owner, field):
    """Check an object of input name -> text against ``declared`` (``[{name, required}]``); 400 names each bad one.

    ``owner`` says whose inputs they are (``tool 'analyst'``), ``field`` the body field (``input``).
    Returns the values as a new dict.
    """
    names = [item["name"] for item in declared]
    checked = {}
    for name, value in values.items():
        if name not in names:
            raise BadRequest(f"unknown input '{field}.{name}' for {owner}; it takes: {', '.join(names) or 'nothing'}",
                             param=f"{field}.{name}")
        if not isinstance(value, str):
            raise BadRequest(f"input '{field}.{name}' must be a string", param=f"{field}.{name}")
        checked[name] = value
    missing = [item["name"] for item in declared if item["required"] and not checked.get(item["name"], "").strip()]
    if missing:
        raise BadRequest(f"missing required input(s) for {owner}: {', '.join(field + '.' + m for m in missing)}",
                         param=f"{field}.{missing[0]}")
    return checked


def normalize_inputs(tool, raw):
    """Validate a run body's ``input`` against the tool's declared inputs.

    ``raw`` may be text (it fills the tool's first declared input) or an
    object of field -> text. Returns a dict; 400 names each bad field.
    """
    owner = f"tool '{tool['id']}'"
    if raw is None:
        raw = {}
    elif isinstance(raw, str):
        if not tool["inputs"]:
            raise BadRequest(f"{owner} takes no inputs", param="input")
        raw = {tool["inputs"][0]["name"]: raw}
    elif not isinstance(raw, dict):
        raise BadRequest("field 'input' must be a string or an object of strings", param="input")
    return check_inputs(tool["inputs"], raw, owner, "input")


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
