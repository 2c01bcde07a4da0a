"""One workflow step: build its prompt, call the model (with retries), commit its result and artifact.

Each step runs on its own daemon thread (a hung upstream call must never
keep the process from exiting), bounded by the engine, which starts at most
``max_parallel_steps`` per run and ``workers`` runs at once. The step's
result and its artifact are committed in one transaction before the engine
hears about it, so nothing downstream ever builds on an artifact a crash
could lose. A step whose call the run's cancel token aborted ends
``cancelled``, not ``failed``, and is not retried.
"""

import threading
import time

from .executor import CANCELLED, StepError
from .parse import status_block
from .plan import step_messages, step_model


class StepRunner:
    """Executes single steps for the engine and reports each one (event, metric, log)."""

    def __init__(self, store, executor, config, *, retries, on_event, metrics, logger, on_change,
                 clock=time.time, monotonic=time.monotonic):
        self.store = store
        self.executor = executor
        self.config = config
        self.retries = retries
        self.on_event = on_event
        self.metrics = metrics
        self.logger = logger
        self.on_change = on_change
        self.clock = clock
        self.monotonic = monotonic

    def launch(self, run, step, tool, artifacts, results, cancel=None):
        """Start ``step`` of ``run`` on its own thread; its ``(step_id, outcome)`` arrives on ``results``.

        ``cancel`` (the run's ``CancelToken``) aborts the step's model call when it is set."""
        messages = step_messages(tool, step, run["inputs"], artifacts)
        model = step_model(self.config, tool["id"], run["model"])
        self.store.step_started(run["run_id"], step["id"], self.clock())
        thread = threading.Thread(target=self._execute, args=(run, step, tool, model, messages, results, cancel),
                                  name=f"bmad-step-{step['id']}"[:60], daemon=True)
        thread.start()

    def _execute(self, run, step, tool, model, messages, results, cancel):
        run_id = run["run_id"]
        outcome = {"state": "failed", "error": "internal error", "error_type": "internal_error", "text": None}
        try:
            outcome = self._attempts(run, step, tool, model, messages, cancel)
            artifact = (step["produces"], outcome["text"]) if outcome["state"] == "succeeded" else None
            self.store.finish_step(run_id, step["id"], outcome["state"], outcome, self.clock(), artifact)
        except Exception as e:
            self.logger.error("workflow step crashed", run_id=run_id, step=step["id"],
                              error=f"{type(e).__name__}: {e}")
            outcome = {"state": "failed", "error": f"{type(e).__name__}: {e}", "error_type": "internal_error",
                       "text": None}
        self.on_event("workflow_step_completed", workflow=run["workflow"], run_id=run_id, step=step["id"],
                      tool=tool["id"], user_id=run["user"], status=outcome["state"],
                      latency_ms=outcome.get("latency_ms"), provider=outcome.get("provider"),
                      model=outcome.get("model"), prompt_tokens=outcome.get("prompt_tokens"),
                      completion_tokens=outcome.get("completion_tokens"), cost_usd=outcome.get("cost_usd"),
                      error_type=outcome.get("error_type"))
        if outcome.get("latency_ms") is not None:
            self.metrics["step_duration"].observe(outcome["latency_ms"] / 1000.0, workflow=run["workflow"],
                                                  tool=tool["id"])
        self.on_change()
        results.put((step["id"], outcome))

    def _attempts(self, run, step, tool, model, messages, cancel):
        began = self.monotonic()
        error = None
        for attempt in range(1, self.retries + 2):
            try:
                if cancel is not None and cancel.cancelled:
                    raise StepError("the run was cancelled", CANCELLED, retryable=False)
                result = self.executor.execute(model, messages, run["user"],
                                               f"{run['run_id']}.{step['id']}.{attempt}", tool,
                                               cache=run["definition"].get("cache", "default"), cancel=cancel)
            except StepError as e:
                error = e
                self.logger.warning("workflow step attempt failed", run_id=run["run_id"], step=step["id"],
                                    attempt=attempt, error_type=e.error_type, error=str(e)[:300])
                if not e.retryable:
                    break
                continue
            return {"state": "succeeded", "text": result.text, "provider": result.provider, "model": result.model,
                    "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                    "cost_usd": result.cost_usd, "latency_ms": round((self.monotonic() - began) * 1000, 3),
                    "attempts": attempt, "error": None, "error_type": None, "report": status_block(result.text)}
        if error.error_type == CANCELLED:
            return {"state": "cancelled", "text": None, "error": f"step '{step['id']}' was cancelled: {error}",
                    "error_type": CANCELLED, "attempts": attempt,
                    "latency_ms": round((self.monotonic() - began) * 1000, 3)}
        return {"state": "failed", "text": None, "error": f"step '{step['id']}' failed: {error}",
                "error_type": error.error_type, "attempts": attempt,
                "latency_ms": round((self.monotonic() - began) * 1000, 3)}
