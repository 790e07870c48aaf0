"""Patches of vLLM internals, one per file, each with a ledger entry in ``LEDGER.md`` and a
drift-guard test in ``integration/vllm/test_drift_guards.py``. Applied by explicit, idempotent
calls from :func:`ttc_plugins.vllm_backend.register`, never at import time. Each module declares
``TARGETS`` (the dotted paths of the attributes it replaces), as the SGLang backend's do."""

from __future__ import annotations

from . import input_processor, output_processor, scheduler_errors, serving_search, worker_failures

PATCHES = (input_processor, output_processor, serving_search, scheduler_errors, worker_failures)


def apply_all() -> None:
    for patch in PATCHES:
        patch.apply()
