"""ttc-plugins as a vLLM plugin.

vLLM calls :func:`register` (entry point ``vllm.general_plugins: ttc``) in every process it starts:
the frontend (``vllm.LLM`` or the API server), the EngineCore and each worker, before any config
exists. ``register`` is idempotent and does four things:

1. refuses an unsupported vLLM version (the message gives the supported range);
2. points the supported architectures at TTC subclasses in ``ModelRegistry`` (they install the
   per-token residual-control op when the engine was started with ``additional_config.ttc``);
3. applies the two frontend patches (``patches/``: control resolution + cache salt, KV report);
4. logs ``ttc-plugins: vllm backend registered (<process>, pid N)`` to stderr.

The logits processor (:class:`.logits.TTCLogitsProcessor`) comes through vLLM's own
``vllm.logits_processors`` entry point or ``logits_processors=``; it stays inert in processes where
``register`` did not run (``VLLM_PLUGINS`` filtered the plugin out).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading

log = logging.getLogger("ttc_plugins.vllm_backend")

REGISTERED_MESSAGE = "ttc-plugins: vllm backend registered ({process}, pid {pid})"
_registered = False
_lock = threading.Lock()

__all__ = ["register", "is_registered", "vllm_version", "REGISTERED_MESSAGE"]


def vllm_version() -> str:
    import vllm

    return getattr(vllm, "__version__", None) or "unknown"


def is_registered() -> bool:
    """Whether :func:`register` ran in this process."""
    return _registered


def register() -> None:
    """The ``vllm.general_plugins`` entry point (idempotent; runs in every vLLM process)."""
    global _registered
    with _lock:
        if _registered:
            return
        from ttc_plugins.engines import require_supported

        require_supported("vllm", vllm_version())
        from . import model_wrap, patches

        model_wrap.register_models()
        patches.apply_all()
        _registered = True
    message = REGISTERED_MESSAGE.format(process=multiprocessing.current_process().name, pid=os.getpid())
    print(message, file=sys.stderr, flush=True)
    log.debug(message)
