"""Patch: ``vllm.v1.core.sched.scheduler.Scheduler.update_from_output``.

Why: a worker-side hook that raises (or a control whose output is not finite) must fail its own
request, not the engine core (:mod:`ttc_plugins.runtime.faults`). A logits processor cannot
finish a request; the scheduler can, and vLLM already has the outcome for it: finish reason
``error``, which its OpenAI server answers with an HTTP 500 for that request alone.
How: the logits processor forces the failed row to EOS and records the failure by the request's
frontend id (``worker.record_failure``); the step's ``ModelRunnerOutput`` carries it to the
engine core (``patches/worker_failures.py``). Before ``update_from_output`` the scheduler finds
those requests (``extra_args[REQUEST_ID_KEY]``) and puts them in vLLM's own error set
(``grammar_compile_error_reqs``: finished with ``FINISHED_ERROR`` at the end of the update); a
request the forced EOS already stopped in that update gets its finish reason turned into
``error``; either way the failure's text becomes the output's ``stop_reason``. See LEDGER.md.
"""

from __future__ import annotations

import functools
import logging

from ttc_plugins.runtime.wire import REQUEST_ID_KEY

from .. import worker

TARGETS = ("vllm.v1.core.sched.scheduler.Scheduler.update_from_output",)
log = logging.getLogger("ttc_plugins.vllm_backend")
_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.engine import FinishReason

    original = Scheduler.update_from_output
    error = getattr(FinishReason, "ERROR", None)  # both seams are checked by the drift guard

    @functools.wraps(original)
    def update_from_output(self, scheduler_output, model_runner_output):
        failures = getattr(model_runner_output, worker.FAILURES_ATTR, None)
        if not failures:
            return original(self, scheduler_output, model_runner_output)
        failed = {req_id: failures[key] for req_id, req in self.requests.items()
                  if (key := (req.sampling_params.extra_args or {}).get(REQUEST_ID_KEY)
                      if req.sampling_params is not None else None) in failures}
        for req_id, failure in failed.items():
            log.error("%s; ending request %s with finish reason 'error'", failure, req_id)
        errors = getattr(self, "grammar_compile_error_reqs", None)
        if errors is not None:
            errors.update(failed)
        outputs = original(self, scheduler_output, model_runner_output)
        if error is not None:
            for engine_outputs in outputs.values():
                for out in engine_outputs.outputs:
                    if out.request_id in failed and out.finish_reason is not None:
                        out.finish_reason = error
                        # what failed, for in-process callers (``CompletionOutput.stop_reason``);
                        # vLLM's server answers "Internal server error" whatever it says
                        out.stop_reason = str(failed[out.request_id])
        return outputs

    Scheduler.update_from_output = update_from_output
    _applied = True
