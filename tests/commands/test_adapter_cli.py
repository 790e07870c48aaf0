"""``ttc adapter train | info | eval`` end to end on the tiny random Llama (the training loop itself:
``tests/ttc_layer/test_train.py``)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from ttc_plugins import cli  # noqa: E402
from ttc_plugins.testing import build_tiny_llama  # noqa: E402

TINY = dict(hidden=64, layers=2, heads=4, kv_heads=2, vocab=1024)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_llama(**TINY)


def test_adapter_commands_end_to_end(tiny, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    r = runner.invoke(cli.app, ["adapter", "train", "--model", str(tiny), "--out", str(out), "--layers", "1",
                                "--problems", "add-sub", "--train-n", "8", "--steps", "2", "--batch-size", "4",
                                "--heads", "2", "--state-dim", "4", "--control-dim", "3", "--eval-every", "0"],
                      env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    path = out / "adapter.safetensors"
    assert path.is_file()
    r = runner.invoke(cli.app, ["adapter", "info", str(path)])
    assert r.exit_code == 0, r.output
    desc = json.loads(r.stdout)
    assert desc["format"] == 2 and desc["layers"] == [1] and desc["horizon"] == [1, 64] and desc["parameters"] > 0
    r = runner.invoke(cli.app, ["adapter", "eval", str(path), "--model", str(tiny), "--n", "2", "--horizons", "0,4",
                                "--max-tokens", "4"])
    assert r.exit_code == 0, r.output
    assert "horizon    0: " in r.stdout and "horizon    4: " in r.stdout and "vs off" in r.stdout
    r = runner.invoke(cli.app, ["adapter", "train", "--model", str(tiny), "--out", str(out), "--layers", "9"])
    assert r.exit_code != 0 and "layers" in r.output
