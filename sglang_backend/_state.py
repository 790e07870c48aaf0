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


def frontend() -> "FrontendState":
    global _frontend
    cfg = config()
    with _lock:
        if _frontend is None:
            from ttc_plugins.manager import get_plugin_manager

            from .frontend import FrontendState

            _frontend = FrontendState(get_plugin_manager(), cfg)
        return _frontend


def worker() -> "WorkerState":
    global _worker
    cfg = config()
    with _lock:
        if _worker is None:
            from ttc_plugins.manager import get_plugin_manager

            from .worker import WorkerState

            _worker = WorkerState(get_plugin_manager(), cfg)
        return _worker
