"""Production code never imports ``ttc_plugins.testing``: those helpers are for tests, and an
installed engine plugin or ``ttc run`` must not depend on them. The check reads every module's
source with ``ast`` (imports inside functions included) and resolves relative imports against
the package each folder installs as (``setup.py``'s namespace map)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = "ttc_plugins.testing"
# folder -> the package it installs as (kernels/<op>/ becomes ttc_plugins.kernels.<op>)
PACKAGES = {
    "ttc_plugins": "ttc_plugins",
    "vllm_backend": "ttc_plugins.vllm_backend",
    "sglang_backend": "ttc_plugins.sglang_backend",
    "kernels": "ttc_plugins.kernels",
}


def production_modules() -> list[Path]:
    files = [p for folder in PACKAGES for p in sorted((ROOT / folder).rglob("*.py"))]
    return [p for p in files if not p.relative_to(ROOT).parts[:2] == ("ttc_plugins", "testing")]


def module_package(path: Path) -> str:
    """The dotted package ``path`` lives in, as installed."""
    folder, *rest = path.relative_to(ROOT).parent.parts
    return ".".join([PACKAGES[folder], *rest])


def _called_name(func: ast.expr) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import, ``from`` import (each imported name counts
    as a possible submodule) and ``importlib.import_module("...")`` with a literal name."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif (isinstance(node, ast.Call) and _called_name(node.func) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.append((node.lineno, node.args[0].value))
    return out


def _is_forbidden(module: str) -> bool:
    return module == FORBIDDEN or module.startswith(FORBIDDEN + ".")


def test_the_scan_sees_every_kind_of_import():
    source = (
        "import ttc_plugins.testing.tiny_model\n"
        "from ..testing.memory_engine import MemoryEngine\n"
        "from .. import testing\n"
        "def f():\n"
        "    import importlib\n"
        "    return importlib.import_module('ttc_plugins.testing')\n"
        "from ..search.seeds import continuation_seed\n"
        "from ttc_plugins.testing_utils import x\n"
    )
    found = {line for line, m in imported_modules(ast.parse(source), "ttc_plugins.commands") if _is_forbidden(m)}
    assert sorted(found) == [1, 2, 3, 6]


def test_the_scan_covers_the_backends_and_kernels():
    rel = {p.relative_to(ROOT).as_posix() for p in production_modules()}
    assert {"ttc_plugins/cli.py", "vllm_backend/search_ops.py", "sglang_backend/search_ops.py",
            "kernels/lqr/op.py", "ttc_plugins/commands/run.py"} <= rel
    assert not any(r.startswith("ttc_plugins/testing/") for r in rel)
    assert module_package(ROOT / "vllm_backend" / "patches" / "input_processor.py") == \
        "ttc_plugins.vllm_backend.patches"


@pytest.mark.parametrize("path", production_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_production_code_does_not_import_the_testing_helpers(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = sorted({f"{path.relative_to(ROOT)}:{line}"
                  for line, module in imported_modules(tree, module_package(path)) if _is_forbidden(module)})
    assert not bad, f"production code imports {FORBIDDEN} (move what it needs into the core): {bad}"
