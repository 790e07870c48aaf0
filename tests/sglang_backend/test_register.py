"""Engine-free parts of the entry point: process detection, version refusal, patch list."""

from __future__ import annotations

import pytest
from ttc_plugins.sglang_backend import PROCESS_ROLES, check_engine_version, process_role

from ttc_plugins.errors import UnsupportedEngineError


def run_scheduler_process():
    return process_role()


def run_detokenizer_process():
    return process_role()


def test_process_role_is_read_from_the_caller_of_load_plugins():
    assert run_scheduler_process() == "scheduler"
    assert run_detokenizer_process() == "detokenizer"
    assert process_role() == "main"
    assert set(PROCESS_ROLES.values()) == {"scheduler", "detokenizer", "dp-controller"}


def test_unsupported_versions_are_refused_with_the_range():
    from ttc_plugins.engines import releases

    data = releases("sglang")
    for tested in data.tested:
        check_engine_version(tested)
    with pytest.raises(UnsupportedEngineError, match=f"supported: sglang {data.range_text}"):
        check_engine_version("0.5.18")


def test_every_patch_module_is_in_the_ledger():
    from pathlib import Path

    import ttc_plugins.sglang_backend as backend

    root = Path(backend.__file__).parent / "patches"
    ledger = (root / "LEDGER.md").read_text()
    modules = sorted(p.stem for p in root.glob("*.py") if p.stem != "__init__")
    text = (root / "__init__.py").read_text()
    for name in modules:
        assert f"`{name}`" in ledger, name
        assert f'"{name}"' in text, f"{name} is not listed in PATCH_MODULES"
