"""Process settings for running an engine in the CLI's own process (shared by every command)."""

from __future__ import annotations

import importlib.util
import os
import sys


def default_engine_name() -> str:
    """``vllm`` when it is installed, else ``hf`` (plain transformers)."""
    return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"


def prepare_engine_env(engine: str) -> None:
    """Settings an engine reads at import: call before torch or the engine is imported."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if engine == "hf":
        return
    # In-process engine, one OpenMP thread: two threads per process slow CPU decoding ~50x on
    # small machines (see the shared notes); the engines run in this process or children of it.
    os.environ["OMP_NUM_THREADS"] = "1"
    if engine == "vllm":
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
