"""Process settings for running an engine in the CLI's own process (shared by every command).

Only settings every machine wants live here. CPU-box tuning (``OMP_NUM_THREADS=1``: two OpenMP
threads per engine process on a 2-core machine slow decoding sharply) is the caller's to set: the
test harness sets it (``noxfile.py``'s ``ENGINE_ENV``), and so do the README's CPU recipes. Forcing it
here would pin every GPU host and many-core CPU to one thread.
"""

from __future__ import annotations

import importlib.util
import os


def default_engine_name() -> str:
    """``vllm`` when it is installed, else ``hf`` (plain transformers)."""
    return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"


def prepare_engine_env(engine: str) -> None:
    """Settings an engine reads at import: call before torch or the engine is imported. Values the
    user set win, except vLLM's in-process engine core."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if engine == "vllm":
        # The engine core in this process: one engine per command, and it starts about 2x faster
        # than in a child process (as the vLLM integration fixtures note).
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        # vLLM's own logging config writes to stdout by default; the CLI's stdout is the result.
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
