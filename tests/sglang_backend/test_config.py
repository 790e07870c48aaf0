"""TTC_SGLANG_CONFIG parsing (engine-free)."""

from __future__ import annotations

import json

import pytest
from ttc_plugins.sglang_backend.config import EngineConfig, TTCConfigError, load_engine_config, parse_engine_config


def test_defaults_when_unset_or_empty():
    for raw in (None, "", "  "):
        cfg = parse_engine_config(raw)
        assert cfg == EngineConfig() and cfg.controls and not cfg.allow_custom_logit_processor


def test_json_and_file_forms(tmp_path):
    vec = tmp_path / "honest.json"
    vec.write_text("[0.5, -0.5]")
    data = {"vectors": {"honest": str(vec)}, "allow_custom_logit_processor": True}
    assert parse_engine_config(json.dumps(data)).vectors == {"honest": str(vec)}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(data))
    cfg = load_engine_config({"TTC_SGLANG_CONFIG": f"@{path}"})
    assert cfg.allow_custom_logit_processor is True and cfg.vector_library().names() == ["honest"]


def test_missing_vector_file_stops_the_start(tmp_path):
    with pytest.raises(TTCConfigError, match=r"TTC_SGLANG_CONFIG\.vectors\.honest: .*does not exist"):
        parse_engine_config(json.dumps({"vectors": {"honest": str(tmp_path / "nope.npy")}}))


@pytest.mark.parametrize(
    "raw, key",
    [
        ('{"vectorz": {}}', "TTC_SGLANG_CONFIG.vectorz"),
        ('{"controls": "maybe"}', "TTC_SGLANG_CONFIG.controls"),
        ("[1, 2]", "TTC_SGLANG_CONFIG"),
        ("{not json", "TTC_SGLANG_CONFIG"),
        ("@/nonexistent/ttc.json", "TTC_SGLANG_CONFIG"),
        ('{"reward_models": {"prm": {"url": "localhost:1", "model": "/m"}}}', "TTC_SGLANG_CONFIG.reward_models.prm.url"),
        ('{"reward_models": {"prm": {"url": "http://h:1"}}}', "TTC_SGLANG_CONFIG.reward_models.prm.model"),
    ],
)
def test_errors_name_the_key(raw, key):
    with pytest.raises(TTCConfigError) as err:
        parse_engine_config(raw)
    assert err.value.key == key


def test_unknown_key_lists_allowed_keys():
    with pytest.raises(TTCConfigError, match="allowed: allow_custom_logit_processor, controls, max_beam_width, reward_models, ttc_layers, vectors"):
        parse_engine_config('{"vectorz": {}}')


def test_reward_models_name_a_prm_server_and_its_model():
    cfg = parse_engine_config('{"reward_models": {"prm": {"url": "http://127.0.0.1:30001", "model": "/m/prm"}}}')
    assert (cfg.reward_models["prm"].url, cfg.reward_models["prm"].model) == ("http://127.0.0.1:30001", "/m/prm")


def test_ttc_layers_are_read_at_start_and_a_missing_file_names_the_key(tmp_path):
    torch = pytest.importorskip("torch")
    from ttc_plugins.ttc_layer.adapter import TTCAdapter
    from ttc_plugins.ttc_layer.config import TTCAdapterConfig

    torch.manual_seed(0)
    path = tmp_path / "a.safetensors"
    TTCAdapter(TTCAdapterConfig(hidden_size=8, heads=1, state_dim=2, control_dim=2, b_rank=2, q_rank=2)).save(path)
    assert parse_engine_config(json.dumps({"ttc_layers": {"1": str(path)}})).ttc_layers == {1: str(path)}
    with pytest.raises(TTCConfigError, match=r"TTC_SGLANG_CONFIG\.ttc_layers\.2: TTC adapter file .* does not exist"):
        parse_engine_config(json.dumps({"ttc_layers": {"2": str(tmp_path / "missing.safetensors")}}))
    with pytest.raises(TTCConfigError, match=r"TTC_SGLANG_CONFIG\.ttc_layers\.-1: layer indices must be >= 0"):
        parse_engine_config(json.dumps({"ttc_layers": {"-1": str(path)}}))
