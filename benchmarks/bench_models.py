"""Model names the benchmark scripts accept (``--model``): ``tiny`` (the integration suites' tiny
random Llama, built on first use), ``smollm2`` (the default model, prepared on first use) or a
model directory."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def model_path(name: str) -> str:
    if name == "tiny":
        sys.path.append(str(ROOT))  # after site-packages: never shadow the installed ttc_plugins
        from integration.common.tiny import tiny_model_dir

        return str(tiny_model_dir())
    if name == "smollm2":
        from ttc_plugins.model.default import default_model_path

        return str(default_model_path(progress=False))
    return name
