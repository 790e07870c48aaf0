"""Patch: ``vllm.v1.worker.gpu_worker.Worker.sample_tokens`` (the CPU worker inherits it).

Why: the worker is where a hook fails (the logits processor, the control op) and the engine core's
scheduler is where a request can be ended; vLLM runs them in different processes (its
multiprocess executor serves one GPU or the CPU backend too), and the only thing that travels
from the worker to the scheduler every step is the step's ``ModelRunnerOutput``.
How: after vLLM's ``sample_tokens`` (which runs the logits processors), the failures this worker
recorded since its last output go with the output as the attribute ``ttc_failures``
(``worker.attach_failures``: a copy of the output; an async output carries them once resolved).
With no failure (every step of a healthy engine) the output is returned as it is.
``patches/scheduler_errors.py`` reads them. See LEDGER.md.
"""

from __future__ import annotations

import functools

from .. import worker

TARGETS = ("vllm.v1.worker.gpu_worker.Worker.sample_tokens",)
_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    from vllm.v1.worker.gpu_worker import Worker

    # the step's output comes from sample_tokens where vLLM splits a step in two (0.32 does; the
    # older releases of the matrix were not rerun with this patch), else from execute_model
    name = "sample_tokens" if hasattr(Worker, "sample_tokens") else "execute_model"
    original = getattr(Worker, name)

    failures = worker._failures  # the dict itself: a healthy step costs one truth test

    @functools.wraps(original)
    def sample_tokens(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        return worker.attach_failures(output) if failures else output

    setattr(Worker, name, sample_tokens)
    _applied = True
