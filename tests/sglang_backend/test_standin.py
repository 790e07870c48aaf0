"""The test-only sgl_kernel stand-in (integration/sglang/standin) fails loudly and records calls."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

STANDIN = Path(__file__).resolve().parents[2] / "integration" / "sglang" / "standin" / "sgl_kernel" / "__init__.py"


def _load():
    spec = importlib.util.spec_from_file_location("sgl_kernel_standin_under_test", STANDIN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_any_name_imports_but_raises_when_called(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("TTC_SGL_KERNEL_STANDIN_LOG", str(log))
    mod = _load()
    fn = mod.assign_req_to_token_pool_cpu
    assert mod.ACCESSED == ["assign_req_to_token_pool_cpu"] and mod.CALLS == []
    with pytest.raises(NotImplementedError, match="sgl_kernel.assign_req_to_token_pool_cpu was called"):
        fn(1, x=2)
    assert mod.CALLS == ["assign_req_to_token_pool_cpu"]
    assert log.read_text().split()[1] == "assign_req_to_token_pool_cpu"


def test_private_names_are_absent():
    mod = _load()
    assert not hasattr(mod, "__wrapped__") and not hasattr(mod, "_anything")
    assert mod.ACCESSED == []
