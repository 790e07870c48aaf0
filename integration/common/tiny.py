"""The tiny random model every engine suite runs on (one builder: ttc_plugins.testing)."""

from __future__ import annotations

from pathlib import Path

from ttc_plugins.testing.tiny_model import build_tiny_llama


def tiny_model_dir(path: Path | None = None) -> Path:
    """A random Llama (hidden 128, 4 layers) with an offline-trained BPE tokenizer, built once."""
    return Path(build_tiny_llama(path))
