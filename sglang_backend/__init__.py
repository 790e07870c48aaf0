"""ttc-plugins for SGLang: the ``sglang.srt.plugins`` entry point and its hooks.

``register()`` is SGLang's general-plugin entry point (``ttc = "ttc_plugins.sglang_backend:register"``),
run by ``sglang.srt.plugins.load_plugins()`` in the main (engine/tokenizer), scheduler and detokenizer
processes. It checks the SGLang version, reads ``TTC_SGLANG_CONFIG`` and registers the hooks listed in
:mod:`.patches` with SGLang's ``HookRegistry``; SGLang applies them right after.

SGLang logs and swallows exceptions raised by a plugin, which would start an engine silently without
the plugin. So the backend refuses an unsupported SGLang, a bad ``TTC_SGLANG_CONFIG`` or a missing
seam with ``SystemExit`` carrying the message: the engine does not start.

Logging: ``ttc_plugins.sglang_backend`` writes INFO to stderr; ``TTC_SGLANG_LOG_FILE=path`` also
appends every record to that file (all processes), e.g. to check which processes loaded the plugin.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("ttc_plugins.sglang_backend")
LOG_FILE_ENV = "TTC_SGLANG_LOG_FILE"
REGISTERED_MESSAGE = "ttc-plugins: sglang backend registered (%s, pid %d)"

# Functions of SGLang that call load_plugins(), and the process each one runs in.
PROCESS_ROLES = {
    "run_scheduler_process": "scheduler",
    "run_detokenizer_process": "detokenizer",
    "run_data_parallel_controller_process": "dp-controller",
}

_registered = False


def process_role() -> str:
    """Which SGLang process is loading us, from the caller of ``load_plugins``."""
    frame = sys._getframe(1)
    while frame is not None:
        role = PROCESS_ROLES.get(frame.f_code.co_name)
        if role is not None:
            return role
        frame = frame.f_back
    return "main"


def _setup_logging() -> None:
    if getattr(log, "_ttc_configured", False):
        return
    log.setLevel(logging.INFO)
    fmt = logging.Formatter("[%(asctime)s %(process)d] %(message)s")
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(fmt)
    log.addHandler(stream)
    path = os.environ.get(LOG_FILE_ENV)
    if path:
        fh = logging.FileHandler(path, encoding="utf-8")
        fh.setFormatter(fmt)
        log.addHandler(fh)
    log.propagate = False
    log._ttc_configured = True  # type: ignore[attr-defined]


class SeamMissing(RuntimeError):
    """An SGLang symbol the backend hooks no longer exists (SGLang changed under us)."""


def installed_sglang_version() -> str:
    from importlib.metadata import version

    return version("sglang")


def check_engine_version(version: str) -> None:
    """Raise ``UnsupportedEngineError`` (with the supported range) for an unsupported SGLang."""
    from ttc_plugins.engines import require_supported

    require_supported("sglang", version)


def register() -> None:
    """SGLang general-plugin entry point. Idempotent (SGLang may call it more than once)."""
    global _registered
    _setup_logging()
    role = process_role()
    if _registered:
        return
    from ttc_plugins.errors import TTCError

    from . import _state

    try:
        check_engine_version(installed_sglang_version())
        _state.config()
        from . import patches

        targets = patches.install()
        _register_models()
    except (TTCError, SeamMissing) as exc:
        log.error("%s", exc)
        raise SystemExit(f"ttc-plugins: refusing to start: {exc}") from exc
    _registered = True
    log.info(REGISTERED_MESSAGE, role, os.getpid())
    log.debug("ttc-plugins: hooks registered on %s", ", ".join(targets))


def _register_models() -> None:
    """Add the backend's model classes (:mod:`.models`, e.g. ``Qwen2ForProcessRewardModel``) to
    SGLang's ``ModelRegistry``; built-in architectures are never replaced."""
    from sglang.srt.models.registry import ModelRegistry

    ModelRegistry.register(f"{__name__}.models")


__all__ = ["register", "process_role", "check_engine_version"]
