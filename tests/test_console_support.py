"""What the server does for the console: request figures without its own files, and a run's artifacts as a zip."""

import io
import zipfile

from tests.workflow_support import start_run, wait_run


def test_console_files_health_and_metrics_are_not_request_figures(start_app, client_for):
    service = start_app({"rate_limits": {"enabled": False}})
    client = client_for(service)
    for _ in range(10):
        for path in ("/bmad/ui", "/bmad/ui/app.js", "/bmad/ui/style.css", "/bmad/health", "/bmad/metrics"):
            assert client.get(path).status == 200
    assert client.get("/bmad/tools").status == 200
    stats = client.get("/bmad/performance").json["stats"]
    assert set(stats["by_route"]) == {"/bmad/tools"}
    assert stats["window_requests"] == 1 and stats["total_requests"] == 1
    assert sum(p["requests"] for p in stats["history"]["points"]) == 1


def test_a_runs_artifacts_come_as_one_zip_for_its_owner_only(start_app, client_for):
    keys = {"auth": {"api_keys": [{"key": "sk-alice-000000", "user": "alice"},
                                  {"key": "sk-bob-0000000", "user": "bob"}]},
            "rate_limits": {"enabled": False}}
    service = start_app(keys)
    alice = client_for(service, {"Authorization": "Bearer sk-alice-000000"})
    bob = client_for(service, {"Authorization": "Bearer sk-bob-0000000"})
    run = wait_run(alice, start_run(alice, "greenfield-service"))
    assert run["state"] == "succeeded"
    resp = alice.get(f"/bmad/runs/{run['run_id']}/artifacts.zip")
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/zip"
    assert resp.getheader("Content-Disposition") == f'attachment; filename="{run["run_id"]}-artifacts.zip"'
    with zipfile.ZipFile(io.BytesIO(resp.body)) as archive:
        assert archive.namelist() == [f"{run['run_id']}/{a['name']}.md" for a in run["artifacts"]]
        for a in run["artifacts"]:
            text = alice.get(f"/bmad/runs/{run['run_id']}/artifacts/{a['name']}").body
            assert archive.read(f"{run['run_id']}/{a['name']}.md") == text
    assert bob.get(f"/bmad/runs/{run['run_id']}/artifacts.zip").status == 404
    assert alice.get("/bmad/runs/run_0000/artifacts.zip").json["error"]["type"] == "run_not_found"
