"""Meta-tests (datasette style): every hook is documented and has a test named after it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from ttc_plugins import hookspecs

HOOKS = sorted(name for name, obj in vars(hookspecs).items() if name.startswith("ttc_") and callable(obj))
TEST_SOURCES = "\n".join(p.read_text() for p in Path(__file__).parent.rglob("test_*.py"))


def test_there_are_hooks_in_every_family():
    families = {
        "registration": {"ttc_register_search_strategies", "ttc_register_scorers", "ttc_register_controls"},
        "decoding": {"ttc_process_logits", "ttc_accept_token", "ttc_step_boundary", "ttc_request_finished"},
        "kv": {"ttc_fork_branch", "ttc_release_branches", "ttc_cache_salt", "ttc_kv_report", "ttc_select_evictions"},
        "hidden-state": {"ttc_resolve_control", "ttc_prepare_controls"},
    }
    for family, names in families.items():
        assert names <= set(HOOKS), f"{family} hooks missing: {names - set(HOOKS)}"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented(name):
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    assert len(doc) > 80, f"{name} needs a docstring stating its contract"
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, f"{name}'s docstring does not document parameter {param!r}"
    assert "Called in" in doc or "runs in" in doc.lower(), f"{name}'s docstring must say which process calls it"
    assert "return" in inspect.getsource(fn).split('"""')[0] or fn.__annotations__.get("return"), name


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_a_test(name):
    assert re.search(rf"def test_hook_{name}\b", TEST_SOURCES), f"add a test named test_hook_{name}"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_typed_and_bodyless(name):
    fn = getattr(hookspecs, name)
    assert "return" in fn.__annotations__, f"{name} needs a return annotation"
    body = inspect.getsource(fn).split('"""')[-1].strip()
    assert body == "", f"{name} must have no body besides its docstring"
