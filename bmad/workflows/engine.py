"""The workflow scheduler: a bounded pool of run workers over a bounded queue.

A worker takes a queued run and drives it: it starts every step whose
consumed artifacts exist (at most ``max_parallel_steps`` at once, each on its
own thread), waits for one to finish, and repeats. A step's result and
artifact are committed before anything depends on them, so after a crash a
run resumes from its first step not yet succeeded and no succeeded step is
ever paid for twice.

In-memory state (the queue, the runs being driven, cancel requests and
their tokens) is guarded by one lock that is never held across a database
write or an LLM call. ``changed`` is notified on every state change, for
long-polls. Cancelling a running run sets its ``CancelToken``, which aborts
the model calls in flight (their connections are closed, so the provider
stops generating); those steps end ``cancelled``.

A run's end is counted (``bmad_workflow_runs_total``) and its event recorded
before its final state is written, so whoever sees the final state sees the
count and the event too. Time spent at an approval gate is not part of a
run's duration; it is reported apart as ``approval_wait_ms``.

Methods for the caller: ``start()``, ``submit(...)``, ``cancel(run_id)``,
``approve(run_id)``, ``describe(run_id)``, ``wait_for_change(version, timeout)``,
``version``, ``stats()``, ``stop(timeout)``.
"""

import queue
import secrets
import threading
import time
import traceback
from collections import deque

from ..errors import HTTPError, ServiceUnavailable
from ..providers.cancel import CancelToken
from .outcomes import END_EVENTS, durations, state_phrase
from .plan import ready_steps
from .steps import StepRunner
from .store import FINAL_STATES


class Conflict(HTTPError):
    """The run is not in a state that allows this action."""

    status = 409
    type = "conflict"


class Engine:
    """Schedules and executes workflow runs stored in a ``RunStore``."""

    def __init__(self, store, catalog, executor, config, *, on_event, metrics, logger, clock=time.time,
                 monotonic=time.monotonic):
        section = config["workflows"]
        self.store = store
        self.catalog = catalog
        self.workers = section["workers"]
        self.queue_limit = section["queue_limit"]
        self.max_parallel = section["max_parallel_steps"]
        self.on_event = on_event
        self.metrics = metrics
        self.logger = logger
        self.clock = clock
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self.changed = threading.Condition(self._lock)
        self._queue = deque()
        self._running = set()
        self._deferred = set()
        self._cancel = set()
        self._tokens = {}  # run_id -> the CancelToken of the drive in progress
        self._reserved = 0
        self._version = 0
        self._stopping = False
        self._threads = []
        self.steps = StepRunner(store, executor, config, retries=section["step_retries"], on_event=on_event,
                                metrics=metrics, logger=logger, on_change=self._changed, clock=clock,
                                monotonic=monotonic)

    @property
    def executor(self):
        """What makes each step's LLM call (see ``executor.py``); tests may swap it."""
        return self.steps.executor

    @executor.setter
    def executor(self, executor):
        self.steps.executor = executor

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self):
        """Resume what a previous process left unfinished, then start the workers."""
        self.store.reset_running_steps()
        # Runs at an approval gate stay there; everything else not final is picked up again.
        resumed = [run_id for run_id, state in self.store.unfinished() if state in ("queued", "running")]
        with self._lock:
            self._queue.extend(resumed)
        if resumed:
            self.logger.info("resuming workflow runs", runs=len(resumed))
        for i in range(self.workers):
            thread = threading.Thread(target=self._worker, name=f"bmad-run-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def begin_stop(self):
        """Take no new runs or steps from now on, and answer waiting long-polls (the drain has begun)."""
        with self._lock:
            self._stopping = True
            self._work.notify_all()
            self.changed.notify_all()

    def stop(self, timeout):
        """Take no new runs or steps; let running steps finish within ``timeout`` seconds; close the store."""
        deadline = self.monotonic() + timeout
        self.begin_stop()
        for thread in self._threads:
            thread.join(max(0.0, deadline - self.monotonic()))
        unfinished = sum(thread.is_alive() for thread in self._threads)
        if unfinished:
            self.logger.warning("workflow steps still running at shutdown; they resume at the next start",
                                runs=unfinished)
        self.store.close()

    # -- the API's actions ----------------------------------------------------------------------

    def submit(self, workflow, inputs, *, user, model=None, title=None, approvals=False, cache="default"):
        """Queue a new run; returns its id. 503 with Retry-After when the queue is full."""
        with self._lock:
            if self._stopping:
                raise ServiceUnavailable("the service is shutting down; start the run again shortly",
                                         headers={"Retry-After": "5"})
            if len(self._queue) + self._reserved >= self.queue_limit:
                raise ServiceUnavailable(f"the workflow queue is full ({self.queue_limit} runs waiting); "
                                         "try again shortly", type="queue_full", headers={"Retry-After": "5"})
            self._reserved += 1
        run_id = "run_" + secrets.token_hex(10)
        run = {"run_id": run_id, "workflow": workflow["id"], "title": title or workflow["name"], "user": user,
               "model": model, "approvals": approvals, "created_at": self.clock()}
        # The definition is kept with the run, so editing the catalog never changes a run already started.
        definition = {"id": workflow["id"], "inputs": [i["name"] for i in workflow["inputs"]],
                      "steps": workflow["steps"], "cache": cache}
        try:
            self.store.create(run, definition, inputs)
        finally:
            with self._lock:
                self._reserved -= 1
        with self._lock:
            self._queue.append(run_id)
            self._work.notify()
            self._bump()
        return run_id

    def cancel(self, run_id):
        """Cancel a run: at once when queued or waiting; when running, its model calls are aborted."""
        token = None
        with self._lock:
            if run_id in self._running:
                self._cancel.add(run_id)
                token = self._tokens.get(run_id)
                self._bump()
        if token is not None:
            token.cancel()  # outside the lock: it shuts sockets down
            return "running"
        with self._lock:
            if run_id in self._running:
                return "running"
            if run_id in self._queue:
                self._queue.remove(run_id)
        if self._cancel_idle(run_id):
            return "cancelled"
        owner = self.store.owner(run_id)
        state = owner[1] if owner else None
        if state == "cancelled":
            return state
        raise Conflict(f"run '{run_id}' {state_phrase(state)} and can no longer be cancelled")

    def _cancel_idle(self, run_id):
        """Cancel a run no worker is driving (queued, at a gate, or left running by a stopped process).

        False when it was already final."""
        if not self.store.cancel_idle(run_id, self.clock(),
                                      before_commit=lambda run: self._count(run, "cancelled", "cancelled")):
            return False
        self.logger.info("workflow run finished", run_id=run_id, state="cancelled")
        return True

    def approve(self, run_id):
        """Pass the approval gate(s) a run waits at and queue it again."""
        run = self.store.load(run_id)
        if run is None or run["state"] != "waiting_approval":
            raise Conflict(f"run '{run_id}' is not waiting for approval: it {state_phrase(run and run['state'])}")
        available = set(self._input_names(run)) | set(run["inputs"]) | set(run["artifacts"])
        _, waiting = ready_steps(run["definition"]["steps"], run["step_states"], available, (),
                                 lambda step: step["id"] in run["approved"])
        gates = [step["id"] for step in waiting]
        if not self.store.approve(run_id, gates, self.clock()):
            raise Conflict(f"run '{run_id}' is no longer waiting for approval")
        with self._lock:
            self._queue.append(run_id)
            self._work.notify()
            self._bump()
        return gates

    # -- reading --------------------------------------------------------------------------------

    @property
    def version(self):
        """A number that changes whenever any run changes state (for long-polls)."""
        return self._version

    @property
    def stopping(self):
        """True once ``stop`` was called: long-polls answer at once instead of waiting."""
        return self._stopping

    def wait_for_change(self, version, timeout):
        """Block until ``version`` is out of date, the engine stops, or ``timeout`` seconds pass."""
        with self._lock:
            self.changed.wait_for(lambda: self._version != version or self._stopping, timeout)

    def describe(self, run_id):
        """The API view of a run with its totals, or None."""
        run = self.store.get(run_id)
        if run is None:
            return None
        steps = run["steps"]
        duration, waited = durations(run, self.clock())
        run["totals"] = {
            "prompt_tokens": sum(s["prompt_tokens"] or 0 for s in steps),
            "completion_tokens": sum(s["completion_tokens"] or 0 for s in steps),
            "cost_usd": round(sum(s["cost_usd"] or 0.0 for s in steps), 8),
            "duration_ms": round(duration * 1000, 3), "approval_wait_ms": round(waited * 1000, 3)}
        del run["waiting_since"], run["approval_wait"]
        with self._lock:
            run["cancel_requested"] = run_id in self._cancel
        return run

    def health(self):
        """The ``workflows`` check of ``/bmad/health``."""
        return {"status": "ok" if self.store.db.alive else "degraded", **self.stats()}

    def stats(self):
        """Runs waiting and running now (for the health check)."""
        with self._lock:
            return {"queued": len(self._queue), "running": len(self._running), "queue_limit": self.queue_limit,
                    "workers": self.workers}

    # -- the workers ----------------------------------------------------------------------------

    def _bump(self):
        # Called with the lock held.
        self._version += 1
        self.changed.notify_all()

    def _changed(self):
        with self._lock:
            self._bump()

    def _worker(self):
        while True:
            with self._lock:
                self._work.wait_for(lambda: self._queue or self._stopping)
                if self._stopping:
                    return
                run_id = self._queue.popleft()
                if run_id in self._running:
                    # Approved again while its previous drive is still wrapping up: run it after.
                    self._deferred.add(run_id)
                    continue
                self._running.add(run_id)
                self.metrics["active"].set(len(self._running))
            try:
                self._drive(run_id)
            except Exception:
                self.logger.error("workflow run crashed", run_id=run_id, error=traceback.format_exc(limit=10))
                self._fail_quietly(run_id)
            with self._lock:
                self._running.discard(run_id)
                self._tokens.pop(run_id, None)
                cancelled_late = run_id in self._cancel
                self._cancel.discard(run_id)
                if run_id in self._deferred:
                    self._deferred.discard(run_id)
                    self._queue.append(run_id)
                    self._work.notify()
                self.metrics["active"].set(len(self._running))
                self._bump()
            if cancelled_late and not self._stopping:
                self._cancel_idle(run_id)

    def _fail_quietly(self, run_id):
        try:
            self.store.skip_pending(run_id)
            self.store.mark(run_id, "failed", finished_at=self.clock(), error="internal error",
                            error_type="internal_error")
        except Exception:
            self.logger.error("cannot mark workflow run failed", run_id=run_id)

    @staticmethod
    def _input_names(run):
        return run["definition"].get("inputs", [])

    def _tools_for(self, run):
        tools = {}
        for step in run["definition"]["steps"]:
            tool = self.catalog.tools.get(step["tool"])
            if tool is None:
                return None
            tools[step["id"]] = tool
        return tools

    def _drive(self, run_id):
        run = self.store.load(run_id)
        if run is None or run["state"] in FINAL_STATES or run["state"] == "waiting_approval":
            return
        steps = run["definition"]["steps"]
        tools = self._tools_for(run)
        if tools is None or set(run["step_states"]) != {s["id"] for s in steps}:
            self._settle(run_id, "failed", "interrupted", "interrupted")
            return
        token = CancelToken()
        with self._lock:
            cancelled = run_id in self._cancel
            self._tokens[run_id] = token
        if cancelled:
            return  # the worker cancels it once this drive is over
        first_start = run["started_at"] is None
        self.store.mark(run_id, "running", started_at=self.clock())
        self._changed()
        if first_start:
            self.on_event("workflow_started", workflow=run["workflow"], run_id=run_id, user_id=run["user"],
                          status="running", model=run["model"])
        states = dict(run["step_states"])
        artifacts = dict(run["artifacts"])
        available = set(self._input_names(run)) | set(run["inputs"]) | set(artifacts)
        results = queue.Queue()
        in_flight = {}
        failure = None
        waiting = []
        # Each pass starts or finishes at least one step, so 2 * steps + 1 passes always suffice.
        for _ in range(2 * len(steps) + 1):
            with self._lock:
                halt = self._stopping or run_id in self._cancel
            if failure is None and not halt:
                startable, waiting = ready_steps(steps, states, available, in_flight,
                                                 lambda step: not run["approvals"] or step["id"] in run["approved"])
                for step in startable[:max(0, self.max_parallel - len(in_flight))]:
                    in_flight[step["id"]] = step
                    states[step["id"]] = "running"
                    self.steps.launch(run, step, tools[step["id"]], artifacts, results, token)
            if not in_flight:
                break
            step_id, outcome = results.get()
            step = in_flight.pop(step_id)
            states[step_id] = outcome["state"]
            if outcome["state"] == "succeeded":
                artifacts[step["produces"]] = outcome["text"]
                available.add(step["produces"])
            elif failure is None and outcome["state"] != "cancelled":
                failure = outcome
        self._conclude(run, states, failure, waiting)

    def _conclude(self, run, states, failure, waiting):
        run_id = run["run_id"]
        with self._lock:
            stopping = self._stopping
            cancelled = run_id in self._cancel
        if all(state == "succeeded" for state in states.values()):
            # A cancel that arrived after the last step finished changes nothing: the work is done.
            self._settle(run_id, "succeeded")
        elif cancelled:
            self._settle(run_id, "cancelled", "cancelled", "cancelled")
        elif failure is not None:
            self._settle(run_id, "failed", failure["error"], failure["error_type"])
        elif stopping:
            pass  # left as it is; the next start resumes it
        elif waiting:
            self.store.wait_for_approval(run_id, self.clock())
            self.logger.info("workflow run waiting for approval", run_id=run_id, steps=[s["id"] for s in waiting])
        else:
            self._settle(run_id, "failed", "interrupted", "interrupted")

    def _settle(self, run_id, status, error=None, error_type=None):
        """End a run: count it and record its event, then write its final state (never the other way
        round: a long-poll that sees the final state must find the count and the event already there)."""
        finished_at = self.clock()
        if status != "succeeded":
            self.store.skip_pending(run_id)
        run = self.store.get(run_id)
        if run is not None:
            run["finished_at"] = finished_at
            self._count(run, status, error_type)
        self.store.mark(run_id, status, finished_at=finished_at, error=error, error_type=error_type)
        self.logger.info("workflow run finished", run_id=run_id, workflow=run and run["workflow"], state=status)

    def _count(self, run, status, error_type):
        """The run's metric and its ``workflow_completed`` / ``_failed`` / ``_cancelled`` event."""
        steps = run["steps"]
        duration, waited = durations(run, run["finished_at"])
        self.metrics["runs"].inc(workflow=run["workflow"], status=status)
        self.on_event(END_EVENTS[status], workflow=run["workflow"], run_id=run["run_id"], user_id=run["user"],
                      status=status, duration_ms=round(duration * 1000, 3),
                      approval_wait_ms=round(waited * 1000, 3),
                      error_type=error_type if status == "failed" else None,  # a cancel is no error
                      prompt_tokens=sum(s["prompt_tokens"] or 0 for s in steps),
                      completion_tokens=sum(s["completion_tokens"] or 0 for s in steps),
                      cost_usd=sum(s["cost_usd"] or 0.0 for s in steps))

