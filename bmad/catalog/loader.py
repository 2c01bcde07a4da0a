"""The BMAD catalog: role-agent tools and the workflows that chain them.

Shipped as JSON files under ``bmad/catalog/{tools,workflows}/<id>.json``; a
user catalog directory laid out the same way overrides entries with the same
id or adds new ones. Everything is validated at startup.
"""

import json
import re
from pathlib import Path

from ..errors import ConfigError, NotFound

SHIPPED_DIR = Path(__file__).parent
ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
TOOL_FIELD_TYPES = {"id": str, "name": str, "description": str, "role": str, "instructions": str, "inputs": list,
               "consumes": list, "produces": str}
WORKFLOW_FIELDS = {"id": str, "name": str, "description": str, "inputs": list, "steps": list}
SUMMARY_FIELDS = ("id", "name", "description", "role", "inputs", "consumes", "produces")


def _load_dir(directory, kind):
    entries = {}
    folder = Path(directory) / kind
    if not folder.is_dir():
        return entries
    for path in sorted(folder.glob("*.json")):
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"catalog file {path}: cannot read it as JSON ({e})") from None
        if not isinstance(entry, dict):
            raise ConfigError(f"catalog file {path}: must hold one JSON object")
        entry["_source"] = str(path)
        entries[entry.get("id")] = entry
    return entries


def _check_fields(entry, fields):
    where = entry.get("_source", "?")
    for name, kind in fields.items():
        if not isinstance(entry.get(name), kind):
            raise ConfigError(f"catalog file {where}: field '{name}' must be a {kind.__name__}")
    if not ID.match(entry["id"]):
        raise ConfigError(f"catalog file {where}: id {entry['id']!r} must be lowercase letters, digits and '-'")


def _check_inputs(entry):
    where = entry["_source"]
    seen = set()
    for i, item in enumerate(entry["inputs"]):
        if (not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]
                or not isinstance(item.get("required"), bool) or not isinstance(item.get("description"), str)):
            raise ConfigError(f"catalog file {where}: inputs[{i}] needs name, required (boolean) and description")
        if item["name"] in seen:
            raise ConfigError(f"catalog file {where}: input {item['name']!r} is declared twice")
        seen.add(item["name"])


class Catalog:
    """The validated tools and workflows, by id."""

    def __init__(self, tools, workflows):
        self.tools = tools
        self.workflows = workflows

    @classmethod
    def load(cls, user_dir=None, shipped_dir=SHIPPED_DIR):
        """Load the shipped catalog, overlay ``user_dir``, and validate everything."""
        tools = _load_dir(shipped_dir, "tools")
        workflows = _load_dir(shipped_dir, "workflows")
        if user_dir:
            if not Path(user_dir).is_dir():
                raise ConfigError(f"catalog_dir {user_dir}: not a directory")
            tools.update(_load_dir(user_dir, "tools"))
            workflows.update(_load_dir(user_dir, "workflows"))
        for tool in tools.values():
            _check_fields(tool, TOOL_FIELD_TYPES)
            _check_inputs(tool)
        for workflow in workflows.values():
            _check_fields(workflow, WORKFLOW_FIELDS)
            _check_inputs(workflow)
            _check_steps(workflow, tools)
        strip = lambda d: {k: {f: v for f, v in e.items() if f != "_source"} for k, e in d.items()}
        return cls(strip(tools), strip(workflows))

    def tool(self, tool_id):
        """The full tool definition; 404 naming the id when unknown."""
        tool = self.tools.get(tool_id)
        if tool is None:
            raise NotFound(f"unknown tool '{tool_id}'", type="tool_not_found")
        return tool

    def workflow(self, workflow_id):
        """The full workflow definition; 404 naming the id when unknown."""
        workflow = self.workflows.get(workflow_id)
        if workflow is None:
            raise NotFound(f"unknown workflow '{workflow_id}'", type="workflow_not_found")
        return workflow

    def tool_summaries(self):
        """Every tool without its long instructions, sorted by id."""
        return [{f: t[f] for f in SUMMARY_FIELDS} for _, t in sorted(self.tools.items())]

    def workflow_summaries(self):
        """Every workflow, sorted by id."""
        return [w for _, w in sorted(self.workflows.items())]


def _check_steps(workflow, tools):
    where = workflow["_source"]
    if not workflow["steps"]:
        raise ConfigError(f"catalog file {where}: a workflow needs at least one step")
    inputs = {i["name"] for i in workflow["inputs"]}
    available = set(inputs)
    step_ids = set()
    for i, step in enumerate(workflow["steps"]):
        label = f"steps[{i}]"
        if not isinstance(step, dict):
            raise ConfigError(f"catalog file {where}: {label} must be an object")
        unknown = set(step) - {"id", "tool", "produces", "consumes", "gate"}
        if unknown:
            raise ConfigError(f"catalog file {where}: {label} has unknown field '{sorted(unknown)[0]}'")
        for name, kind in (("id", str), ("tool", str), ("produces", str), ("consumes", list)):
            if not isinstance(step.get(name), kind):
                raise ConfigError(f"catalog file {where}: {label}.{name} must be a {kind.__name__}")
        if step["id"] in step_ids:
            raise ConfigError(f"catalog file {where}: step id {step['id']!r} is used twice")
        step_ids.add(step["id"])
        if step.get("gate") not in (None, "approval"):
            raise ConfigError(f"catalog file {where}: step {step['id']!r} gate must be 'approval'")
        tool = tools.get(step["tool"])
        if tool is None:
            raise ConfigError(f"catalog file {where}: step {step['id']!r} names unknown tool {step['tool']!r}")
        for artifact in step["consumes"]:
            if artifact not in available:
                raise ConfigError(f"catalog file {where}: step {step['id']!r} consumes {artifact!r}, "
                                  "which no earlier step or workflow input provides")
        for item in tool["inputs"]:
            if item["required"] and item["name"] not in inputs and item["name"] not in step["consumes"]:
                raise ConfigError(f"catalog file {where}: step {step['id']!r} runs tool {tool['id']!r}, whose "
                                  f"required input {item['name']!r} the workflow does not provide")
        if step["produces"] in available:
            raise ConfigError(f"catalog file {where}: step {step['id']!r} produces {step['produces']!r}, "
                              "which is already provided")
        available.add(step["produces"])
