"""The reliability figures the suites measure (fuzz, faults, load), printed and, when
``TTC_RELIABILITY_OUT`` names a folder, written there as ``<name>-<engine>.json`` for
``integration/reliability.py`` to gather."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write(name: str, engine: str, figures: dict[str, Any]) -> None:
    print(f"[{name}] {json.dumps(figures)}")
    out = os.environ.get("TTC_RELIABILITY_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{name}-{engine}.json").write_text(json.dumps(figures, indent=1))
