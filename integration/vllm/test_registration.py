"""register(): entry point, every process, idempotent, VLLM_PLUGINS filtering, version check."""

from __future__ import annotations

import re
from importlib.metadata import entry_points

import pytest
import ttc_vllm_engine as engine

import ttc_plugins.vllm_backend as backend


def test_general_plugin_entry_point_is_installed():
    eps = [ep for ep in entry_points(group="vllm.general_plugins") if ep.name == "ttc"]
    assert len(eps) == 1 and eps[0].value == "ttc_plugins.vllm_backend:register"
    assert eps[0].load() is backend.register


def test_register_ran_in_this_process_and_is_idempotent(eager_llm):
    from vllm import ModelRegistry

    assert backend.is_registered()  # vLLM's loader called it while building the in-process engine
    backend.register()
    backend.register()
    archs = ModelRegistry.get_supported_archs()
    assert "LlamaForCausalLM" in archs


def test_register_runs_in_every_engine_process(compiled_run):
    result, log = compiled_run
    procs = engine.registrations(log)
    assert "MainProcess" in procs, log[-3000:]
    engine_core = [p for p in procs if p.startswith("EngineCore")]
    workers = [p for p in procs if "Worker" in p]
    assert engine_core and workers, f"register() lines by process: {procs}"
    pids = set().union(*procs.values())
    assert len(pids) >= 3, f"expected frontend, EngineCore and worker pids, got {procs}"


def test_register_runs_in_api_server_process(server):
    procs = engine.registrations(server["log"].read_text())
    assert any("Worker" in p for p in procs) and any(p.startswith("EngineCore") for p in procs), procs
    assert len(set().union(*procs.values())) >= 3, procs


def test_vllm_plugins_filter_is_respected(no_plugin_run):
    _, log = no_plugin_run
    assert not engine.REGISTERED.search(log), "register() ran although VLLM_PLUGINS excluded 'ttc'"
    assert "residual-stream control installed" not in log


def test_unsupported_vllm_version_is_refused(monkeypatch):
    from ttc_plugins.errors import UnsupportedEngineError

    monkeypatch.setattr(backend, "_registered", False)
    monkeypatch.setattr(backend, "vllm_version", lambda: "0.25.1")
    from ttc_plugins.engines import releases

    expected = re.escape(f"vllm 0.25.1; supported: vllm {releases('vllm').range_text}")
    with pytest.raises(UnsupportedEngineError, match=expected):
        backend.register()
    assert not backend.is_registered()
