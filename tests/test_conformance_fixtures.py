"""Meta-test of the conformance suite: every ``engine_*`` fixture its tests ask for is documented
in ``integration/conformance/engine.py`` (what a third engine must provide) and defined by every
engine's ``integration/<engine>/fixtures.py`` (or by ``integration/conftest.py`` for all of them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "integration" / "conformance"
ENGINES = ["vllm", "sglang"]


def _args(tree: ast.AST) -> set[str]:
    return {a.arg for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) for a in node.args.args}


def _requested() -> set[str]:
    names = set()
    for path in SUITE.glob("test_*.py"):
        names |= {n for n in _args(ast.parse(path.read_text())) if n.startswith("engine_")}
    return names


def test_the_suite_asks_for_engine_fixtures():
    assert {"engine_generate", "engine_replicas", "engine_parallel"} <= _requested()


@pytest.mark.parametrize("name", sorted(_requested()))
def test_each_engine_fixture_is_documented(name):
    assert f"``{name}" in (SUITE / "engine.py").read_text(), f"document {name} in integration/conformance/engine.py"


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_defines_every_engine_fixture(engine):
    defined = set()
    for path in (ROOT / "integration" / engine / "fixtures.py", ROOT / "integration" / "conftest.py"):
        defined |= {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}
    assert sorted(_requested() - defined) == []
