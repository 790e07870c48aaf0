"""What README.md and docs/ name exists: repository paths and ``ttc_plugins`` objects.

The code moves under the docs (files split, classes renamed); these checks make a stale name a
failing test instead of a reader's dead end. Links between pages are mkdocs' job
(``mkdocs build --strict`` in the unit session); the README's links are checked in test_repo.py.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

from doc_blocks import ROOT, pages

TOP = ("ttc_plugins", "vllm_backend", "sglang_backend", "kernels", "tests", "integration", "benchmarks",
       "requirements", "docs")
PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(TOP)})/[\w./*-]*\w)")
LINK_TARGET = re.compile(r"\]\([^)]*\)")  # a page link's target is relative to its page: mkdocs checks it
DOTTED = re.compile(r"(?<![\w./-])(ttc_plugins(?:\.\w+)+(?::\w+)?)")
PAGES = pages()
#: dotted names the docs give that are not objects: logger names (``ttc_plugins/manager.py``)
NOT_OBJECTS = {"ttc_plugins.trace"}


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_named_paths_exist(page):
    missing = [p for p in PATH.findall(LINK_TARGET.sub("]", page.read_text()))
               if not (list(ROOT.glob(p)) if "*" in p else (ROOT / p).exists())]
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {missing}"


def _defines(module_file: Path, name: str) -> bool:
    """``name`` is defined (class, function, assignment, import) at the top of ``module_file``."""
    for node in ast.parse(module_file.read_text()).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return True
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
            return True
    return False


def resolves(dotted: str) -> bool:
    """The longest module prefix exists (found without importing it, so without any engine) and
    the rest, if any, is one name defined in it, optionally followed by one attribute of a class."""
    parts = dotted.replace(":", ".").split(".")
    for cut in range(len(parts), 0, -1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:cut]))
        except ImportError:  # a prefix that is a module, not a package
            spec = None
        if spec is None:
            continue
        rest = parts[cut:]
        if not rest:
            return True
        origin = Path(spec.origin)
        if len(rest) > 2 or not _defines(origin, rest[0]):
            return False
        if len(rest) == 2:  # Class.attribute: the attribute is named inside the class body
            tree = ast.parse(origin.read_text())
            cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == rest[0])
            return rest[1] in {getattr(n, "name", None) for n in cls.body} | {
                t.id for n in cls.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_named_ttc_plugins_objects_exist(page):
    missing = sorted({d for d in DOTTED.findall(page.read_text()) if d not in NOT_OBJECTS and not resolves(d)})
    assert not missing, f"{page.relative_to(ROOT)} names objects that do not exist: {missing}"


def test_the_resolver_tells_a_stale_name():
    assert resolves("ttc_plugins.search.run_search") and resolves("ttc_plugins.types.ControlSpec.key")
    assert not resolves("ttc_plugins.search.no_such_thing") and not resolves("ttc_plugins.no_such_module")
