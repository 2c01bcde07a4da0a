"""The Azure OpenAI client: deployment paths, api-version, the api-key header."""

import json

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.llm_support import UPSTREAM_KEY, entry, gateway_config

MESSAGES = [{"role": "user", "content": "hello azure"}]


@pytest.fixture
def az():
    with FakeUpstream("azure", api_key=UPSTREAM_KEY, deployments={"prod-4o", "gpt-4o"}) as server:
        yield server


def test_deployment_path_version_and_key(start_app, client_for, az):
    service = start_app(gateway_config(entry(az, "az", deployment="prod-4o", api_version="2024-10-21")))
    r = client_for(service).post("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES})
    assert r.status == 200
    assert r.json["choices"][0]["message"]["content"] == "fake-azure reply to: hello azure"
    sent = az.requests[-1]
    assert sent.path == "/openai/deployments/prod-4o/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == UPSTREAM_KEY
    assert "authorization" not in sent.headers


def test_without_a_deployment_the_model_names_it(start_app, client_for, az):
    item = entry(az, "az")
    del item["deployment"]
    service = start_app(gateway_config(item))
    assert client_for(service).post("/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES}).status == 200
    assert az.requests[-1].path == "/openai/deployments/gpt-4o/chat/completions"
    assert az.requests[-1].query["api-version"] == "2024-10-21"  # the default
    r = client_for(service).post("/v1/chat/completions", {"model": "nope", "messages": MESSAGES})
    assert r.status == 404 and "DeploymentNotFound" == r.json["error"]["code"]


def test_azure_stream_with_its_leading_filter_chunk(start_app, client_for, az):
    az.azure_prompt_filter_chunk = True
    service = start_app(gateway_config(entry(az, "az", deployment="prod-4o")))
    r = client_for(service).post("/v1/chat/completions", {"model": "m", "messages": MESSAGES, "stream": True})
    events = [e for e in r.body.split(b"\n\n") if e]
    first = json.loads(events[0][6:])
    assert first["choices"] == [] and "prompt_filter_results" in first  # passed on as Azure sent it
    assert events[-1] == b"data: [DONE]"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in map(lambda e: json.loads(e[6:]), events[1:-1])
                   if c["choices"])
    assert text == "fake-azure reply to: hello azure"
