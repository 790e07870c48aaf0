"""Both backends declare their patches the same way: one seam per module, each module a tuple
``TARGETS`` of the dotted paths it replaces or hooks, named in its backend's ``LEDGER.md``
(read with ``ast``: no engine needed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p for backend in ("vllm_backend", "sglang_backend")
                 for p in (ROOT / backend / "patches").glob("*.py") if p.name != "__init__.py")


def _targets(path: Path) -> tuple[str, ...] | None:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["TARGETS"]:
            return ast.literal_eval(node.value)
    return None


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_every_patch_module_declares_its_targets_and_is_in_the_ledger(path):
    targets = _targets(path)
    assert isinstance(targets, tuple) and targets, f"{path.name}: no TARGETS tuple"
    assert all(isinstance(t, str) and t.count(".") >= 2 for t in targets), targets
    ledger = (path.parent / "LEDGER.md").read_text()
    assert f"{path.stem}" in ledger, f"{path.name} is not in {path.parent.name}/LEDGER.md"


def test_both_backends_have_patches():
    assert {p.parent.parent.name for p in MODULES} == {"vllm_backend", "sglang_backend"}
