"""Process-wide backend state, built on first use in each SGLang process."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .config import EngineConfig
    from .frontend import FrontendState
    from .worker import WorkerState

_lock = threading.Lock()
_config: "EngineConfig | None" = None
_frontend: "FrontendState | None" = None
_worker: "WorkerState | None" = None


def config() -> "EngineConfig":
    global _config
    with _lock:
        if _config is None:
            from .config import load_engine_config

            _config = load_engine_config()
        return _config


def _built(name: str, module: str, cls: str):
    """The process's one ``cls`` (from ``.module``), built on first use with the plugin manager
    and the engine config."""
    cfg = config()
    with _lock:
        if globals()[name] is None:
            import importlib

            from ttc_plugins.manager import get_plugin_manager

            built = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
            globals()[name] = built(get_plugin_manager(), cfg)
        return globals()[name]


def frontend() -> "FrontendState":
    return _built("_frontend", "frontend", "FrontendState")


def worker() -> "WorkerState":
    return _built("_worker", "worker", "WorkerState")
