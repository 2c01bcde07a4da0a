"""Workflow run endpoints: start, read (with long-poll), artifacts (one, or all as a zip), list, cancel, approve.

Callers see their own runs; admins (and everyone in open mode) see all. A
run someone else owns answers 404, as if it did not exist, so ids cannot be
probed.
"""

import io
import re
import time
import zipfile

from ..catalog.prompts import check_inputs
from ..errors import BadRequest, Forbidden, NotFound
from ..gateway.chat import MAX_MODEL_CHARS
from ..gateway.pipeline import CACHE_MODES, DEFAULT
from ..http.request import Response, json_response
from ..workflows.store import FINAL_STATES, RUN_STATES

START_FIELDS = ("inputs", "model", "title", "approvals", "cache")
MAX_WAIT_SECONDS = 60.0
MAX_TITLE_CHARS = 200
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MARKDOWN = "text/markdown; charset=utf-8"
ZIP = "application/zip"
UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
# ASCII digits only: str.isdigit() and float() also take other scripts' digits and
# superscripts ('²'), which int() then refuses.
LIMIT = re.compile(r"[0-9]{1,3}\Z")
CURSOR = re.compile(r"[0-9]{1,18}\Z")
SECONDS = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?\Z")  # a JSON number, unsigned


def _body(req):
    return req.json() if req.body else {}


def _inputs(workflow, raw):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise BadRequest("field 'inputs' must be an object of input name -> text", param="inputs")
    checked = check_inputs(workflow["inputs"], raw, f"workflow '{workflow['id']}'", "inputs")
    return {name: value for name, value in checked.items() if value.strip()}


def _optional_text(body, name, limit):
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise BadRequest(f"field '{name}' must be a string of 1-{limit} characters", param=name)
    return value


def start_run(req):
    """POST /bmad/workflows/{workflow_id}/runs: queue a run; 202 with its id and a Location header."""
    workflow = req.app.catalog.workflow(req.params["workflow_id"])
    body = _body(req)
    unknown = sorted(set(body) - set(START_FIELDS))
    if unknown:
        raise BadRequest(f"unknown field '{unknown[0]}'; a run takes {', '.join(START_FIELDS)}", param=unknown[0])
    inputs = _inputs(workflow, body.get("inputs"))
    model = _optional_text(body, "model", MAX_MODEL_CHARS)
    title = _optional_text(body, "title", MAX_TITLE_CHARS)
    approvals = body.get("approvals", False)
    if not isinstance(approvals, bool):
        raise BadRequest("field 'approvals' must be true or false", param="approvals")
    cache = body.get("cache", DEFAULT)
    if cache not in CACHE_MODES:
        raise BadRequest(f"field 'cache' must be one of {', '.join(CACHE_MODES)}", param="cache")
    run_id = req.app.workflows.submit(workflow, inputs, user=req.user, model=model, title=title, approvals=approvals,
                                      cache=cache)
    link = f"/bmad/runs/{run_id}"
    return json_response({"status": "accepted", "run_id": run_id, "state": "queued", "links": {"self": link}},
                         202, {"Location": link})


def _visible_run(req, run_id):
    owner = req.app.workflows.store.owner(run_id)
    if owner is None or not (req.principal.is_admin or owner[0] == req.user):
        raise NotFound(f"unknown run '{run_id}'", type="run_not_found")
    return owner


def _wait_seconds(req):
    raw = req.query.get("wait")
    if raw is None or raw == "":
        return 0.0
    seconds = float(raw) if SECONDS.match(raw) else -1.0
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise BadRequest(f"query parameter 'wait' must be a number of seconds from 0 to {MAX_WAIT_SECONDS:g}",
                         param="wait")
    return seconds


# A long-poll answers once the run needs nobody (final) or needs someone (an approval): neither changes by itself.
SETTLED_STATES = FINAL_STATES | {"waiting_approval"}


def get_run(req):
    """GET /bmad/runs/{run_id}[?wait=S]: the run; with ``wait``, once it is final or waiting for an approval,
    or S seconds passed."""
    run_id = req.params["run_id"]
    _visible_run(req, run_id)
    engine = req.app.workflows
    deadline = time.monotonic() + _wait_seconds(req)
    # Each pass either returns or waits for a state change; the deadline bounds the passes.
    while True:
        version = engine.version
        run = engine.describe(run_id)
        left = deadline - time.monotonic()
        if run["state"] in SETTLED_STATES or left <= 0 or engine.stopping:
            return {"status": "success", "run": run}
        engine.wait_for_change(version, left)


def get_artifact(req):
    """GET /bmad/runs/{run_id}/artifacts/{name}: the artifact as Markdown."""
    run_id, name = req.params["run_id"], req.params["name"]
    _visible_run(req, run_id)
    text = req.app.workflows.store.artifact(run_id, name)
    if text is None:
        raise NotFound(f"run '{run_id}' has no artifact '{name}'", type="artifact_not_found")
    return Response(200, text.encode("utf-8"), content_type=MARKDOWN)


def artifacts_zip(req):
    """GET /bmad/runs/{run_id}/artifacts.zip: every artifact of the run, one Markdown file each."""
    run_id = req.params["run_id"]
    _visible_run(req, run_id)
    buf = io.BytesIO()
    used = set()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text, created_at in req.app.workflows.store.artifacts(run_id):
            # Names come from the catalog, but a file name in a zip is a path on someone's disk.
            stem = base = UNSAFE_FILE_CHARS.sub("_", name).lstrip(".") or "artifact"
            for n in range(2, 10_000):
                if stem not in used:
                    break
                stem = f"{base}-{n}"
            used.add(stem)
            member = zipfile.ZipInfo(f"{run_id}/{stem}.md",
                                     time.gmtime(max(created_at, 315532800))[:6])  # zip dates start in 1980
            member.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(member, text.encode("utf-8"))
    return Response(200, buf.getvalue(), {"Content-Disposition": f'attachment; filename="{run_id}-artifacts.zip"'},
                    content_type=ZIP)


def _limit(req):
    raw = req.query.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not LIMIT.match(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"query parameter 'limit' must be an integer from 1 to {MAX_LIMIT}", param="limit")
    return int(raw)


def list_runs(req):
    """GET /bmad/runs?workflow=&state=&user=&limit=&cursor=: runs newest first, one page at a time."""
    q = req.query
    state = q.get("state") or None
    if state is not None and state not in RUN_STATES:
        raise BadRequest(f"query parameter 'state' must be one of {', '.join(RUN_STATES)}", param="state")
    user = q.get("user") or None
    if not req.principal.is_admin:
        if user is not None and user != req.user:
            raise Forbidden("only admins may list other users' runs")
        user = req.user
    cursor = q.get("cursor") or None
    if cursor is not None and not CURSOR.match(cursor):
        raise BadRequest("query parameter 'cursor' must be a next_cursor value from a previous page", param="cursor")
    runs, next_seq = req.app.workflows.store.list(workflow=q.get("workflow") or None, state=state, user=user,
                                                  limit=_limit(req), before_seq=int(cursor) if cursor else None)
    return {"status": "success", "runs": runs, "next_cursor": str(next_seq) if next_seq is not None else None}


def cancel_run(req):
    """POST /bmad/runs/{run_id}/cancel: cancelled at once when queued or waiting; a running one's model calls are
    aborted (202)."""
    run_id = req.params["run_id"]
    _visible_run(req, run_id)
    state = req.app.workflows.cancel(run_id)
    if state == "cancelled":
        return {"status": "success", "run_id": run_id, "state": "cancelled"}
    return json_response({"status": "accepted", "run_id": run_id, "state": state, "cancel_requested": True}, 202)


def approve_run(req):
    """POST /bmad/runs/{run_id}/approve: pass the approval gate a run waits at."""
    run_id = req.params["run_id"]
    _visible_run(req, run_id)
    steps = req.app.workflows.approve(run_id)
    return json_response({"status": "accepted", "run_id": run_id, "state": "queued", "approved_steps": steps}, 202)
