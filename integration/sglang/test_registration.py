"""Foundation (#2): register() ran in the main and scheduler processes; the tiny model generates."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import ttc_sglang_engine as helpers

from integration.common import scenarios


def test_register_ran_in_main_scheduler_and_detokenizer(engine, run_dir):
    text = (run_dir / "ttc-backend.log").read_text()
    seen = {(role, int(pid)) for role, pid in helpers.REGISTERED.findall(text)}
    roles = {role for role, _ in seen}
    assert ("main", os.getpid()) in seen, text
    assert {"scheduler", "detokenizer"} <= roles, text
    scheduler_pids = {pid for role, pid in seen if role == "scheduler"}
    assert os.getpid() not in scheduler_pids
    assert "residual control installed on 4 decoder layers" in text


def test_plugin_was_loaded_through_the_entry_point():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="sglang.srt.plugins")}
    assert eps.get("ttc") == "ttc_plugins.sglang_backend:register"


def test_tiny_model_generates(engine):
    out = helpers.generate_raw(engine, [scenarios.PROMPTS[0]], [None], 5)[0]
    assert len(out["output_ids"]) == 5 and out["meta_info"]["finish_reason"]["type"] == "length"


def test_unsupported_sglang_version_is_refused_with_the_supported_range(monkeypatch):
    import ttc_plugins.sglang_backend as backend

    monkeypatch.setattr(backend, "_registered", False)
    from ttc_plugins.engines import releases

    monkeypatch.setattr(backend, "installed_sglang_version", lambda: "0.5.18")
    with pytest.raises(SystemExit) as exc:
        backend.register()
    assert "refusing to start" in str(exc.value)
    assert f"sglang 0.5.18; supported: sglang {releases('sglang').range_text}" in str(exc.value)
    assert backend._registered is False


def test_bad_engine_config_is_refused_naming_the_key():
    code = "from ttc_plugins.sglang_backend import register\nregister()\n"
    env = {**os.environ, "TTC_SGLANG_CONFIG": '{"vectorz": {}}'}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode != 0
    assert "TTC_SGLANG_CONFIG.vectorz" in proc.stderr, proc.stderr[-2000:]
