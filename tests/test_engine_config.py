"""The engine-wide settings base shared by the backends."""

from __future__ import annotations

import pytest

from ttc_plugins.engine_config import EngineConfigBase, TTCConfigError, validate_engine_config


class Config(EngineConfigBase):
    depth: int = 1


def test_valid_config_and_defaults():
    cfg = validate_engine_config(Config, {"depth": 3}, "X")
    assert cfg.depth == 3 and cfg.controls and cfg.vectors == {}


@pytest.mark.parametrize(
    "raw, key, words",
    [
        ([1, 2], "X", "must be a JSON object"),
        ({"dpeth": 1}, "X.dpeth", "unknown key; allowed: controls, depth, ttc_layers, vectors"),
        ({"depth": "deep"}, "X.depth", "valid integer"),
    ],
)
def test_errors_name_the_key(raw, key, words):
    with pytest.raises(TTCConfigError) as exc:
        validate_engine_config(Config, raw, "X")
    assert exc.value.key == key and words in exc.value.message


def test_named_vectors_are_checked(tmp_path):
    (tmp_path / "v.json").write_text("[1.0, 2.0]")
    cfg = validate_engine_config(Config, {"vectors": {"v": str(tmp_path / "v.json")}}, "X")
    cfg.check_vectors("X", hidden_size=2)
    with pytest.raises(TTCConfigError, match=r"X\.vectors\.v: has 2 values; the model's hidden size is 3"):
        cfg.check_vectors("X", hidden_size=3)
    bad = validate_engine_config(Config, {"vectors": {"w": str(tmp_path / "missing.json")}}, "X")
    with pytest.raises(TTCConfigError, match=r"X\.vectors\.w: .*does not exist"):
        bad.check_vectors("X")
