"""The BMAD catalog: shipped content, endpoints, user overrides and validation."""

import json

import pytest

from bmad.catalog.loader import Catalog
from bmad.errors import ConfigError

ROLE_AGENTS = {"analyst", "pm", "ux-expert", "architect", "po", "sm", "dev", "qa"}


def test_shipped_catalog_is_complete():
    catalog = Catalog.load()
    assert ROLE_AGENTS <= set(catalog.tools) and len(catalog.tools) >= 10
    assert len(catalog.workflows) >= 4
    assert {"greenfield-fullstack", "greenfield-service", "greenfield-ui", "brownfield-fullstack"} <= set(catalog.workflows)
    for tool in catalog.tools.values():
        assert {"id", "name", "description", "role", "instructions", "inputs", "produces"} <= set(tool)
        assert '"status"' in tool["instructions"]  # asks for the closing JSON status block
    assert any(step.get("gate") == "approval" for w in catalog.workflows.values() for step in w["steps"])


def test_list_tools_omits_instructions(start_app, client_for):
    c = client_for(start_app())
    r = c.get("/bmad/tools")
    assert r.status == 200 and r.json["status"] == "success"
    assert all("instructions" not in t for t in r.json["tools"])
    full = c.get("/bmad/tools/architect").json["tool"]
    assert full["id"] == "architect" and len(full["instructions"]) > 200


def test_workflow_endpoints(start_app, client_for):
    c = client_for(start_app())
    ids = [w["id"] for w in c.get("/bmad/workflows").json["workflows"]]
    assert "greenfield-service" in ids
    wf = c.get("/bmad/workflows/greenfield-service").json["workflow"]
    assert [s["tool"] for s in wf["steps"]][0] == "analyst"


def test_preview_builds_exact_messages(start_app, client_for):
    c = client_for(start_app())
    r = c.post("/bmad/tools/pm/preview", {"input": {"focus": "MVP only"},
                                          "context": {"project-brief": "# Brief\nA tiny todo app."}})
    assert r.status == 200
    messages = r.json["messages"]
    tool = c.get("/bmad/tools/pm").json["tool"]
    assert messages[0] == {"role": "system", "content": tool["instructions"]}
    assert messages[1]["role"] == "user"
    assert "### focus\nMVP only" in messages[1]["content"]
    assert "### project-brief\n# Brief\nA tiny todo app." in messages[1]["content"]


def test_preview_text_input_fills_the_first_input(start_app, client_for):
    r = client_for(start_app()).post("/bmad/tools/analyst/preview", {"input": "a habit tracker"})
    assert "### idea\na habit tracker" in r.json["messages"][1]["content"]


@pytest.mark.parametrize("body, field", [
    ({"input": 5}, "input"),
    ({"input": {"idea": 5}}, "input.idea"),
    ({"input": "x", "context": []}, "context"),
    ({"input": "x", "context": {"prd": 1}}, "context.prd"),
    ({"input": "x", "temperature": 1}, "temperature"),
])
def test_preview_rejects_bad_fields_by_name(start_app, client_for, body, field):
    r = client_for(start_app()).post("/bmad/tools/analyst/preview", body)
    assert r.status == 400 and field in r.json["error"]["message"]


def _write(root, kind, entry):
    folder = root / kind
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{entry['id']}.json").write_text(json.dumps(entry))


def _tool(tid, **extra):
    tool = {"id": tid, "name": tid.title(), "description": "d", "role": "r", "instructions": "do it",
            "inputs": [{"name": "idea", "required": True, "description": "the idea"}], "consumes": [],
            "produces": f"{tid}-out"}
    tool.update(extra)
    return tool


def test_user_catalog_overrides_and_adds(tmp_path, start_app, client_for):
    _write(tmp_path, "tools", _tool("analyst", name="Our Analyst"))
    _write(tmp_path, "tools", _tool("legal-review"))
    _write(tmp_path, "workflows", {"id": "legal-flow", "name": "Legal", "description": "d",
                                   "inputs": [{"name": "idea", "required": True, "description": "x"}],
                                   "steps": [{"id": "a", "tool": "analyst", "produces": "analyst-out", "consumes": []},
                                             {"id": "b", "tool": "legal-review", "produces": "legal-review-out",
                                              "consumes": ["analyst-out"]}]})
    c = client_for(start_app({"catalog_dir": str(tmp_path)}))
    assert c.get("/bmad/tools/analyst").json["tool"]["name"] == "Our Analyst"
    assert c.get("/bmad/tools/legal-review").status == 200
    assert c.get("/bmad/workflows/legal-flow").status == 200
    assert c.get("/bmad/tools/pm").status == 200  # shipped entries stay


@pytest.mark.parametrize("steps, message", [
    ([{"id": "a", "tool": "ghost", "produces": "x", "consumes": []}], "unknown tool 'ghost'"),
    ([{"id": "a", "tool": "analyst", "produces": "project-brief", "consumes": ["prd"]}], "consumes 'prd'"),
    ([{"id": "a", "tool": "analyst", "produces": "p", "consumes": []},
      {"id": "a", "tool": "analyst", "produces": "q", "consumes": []}], "used twice"),
    ([{"id": "a", "tool": "analyst", "produces": "p", "consumes": []},
      {"id": "b", "tool": "pm", "produces": "p", "consumes": []}], "already provided"),
])
def test_invalid_user_workflows_stop_startup(tmp_path, steps, message):
    _write(tmp_path, "workflows", {"id": "broken", "name": "B", "description": "d",
                                   "inputs": [{"name": "idea", "required": True, "description": "x"}], "steps": steps})
    with pytest.raises(ConfigError) as e:
        Catalog.load(tmp_path)
    assert message in str(e.value) and "broken.json" in str(e.value)


def test_required_tool_input_must_be_provided(tmp_path):
    _write(tmp_path, "workflows", {"id": "noidea", "name": "B", "description": "d", "inputs": [],
                                   "steps": [{"id": "a", "tool": "analyst", "produces": "p", "consumes": []}]})
    with pytest.raises(ConfigError, match="required input 'idea'"):
        Catalog.load(tmp_path)


def test_malformed_catalog_file_is_named(tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="bad.json"):
        Catalog.load(tmp_path)


def test_missing_catalog_dir_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="catalog_dir"):
        Catalog.load(tmp_path / "absent")
