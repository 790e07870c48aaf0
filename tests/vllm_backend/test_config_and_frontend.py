"""Engine-free parts of the vLLM backend: engine-config validation, request preparation (control
resolution, cache salt), KV accounting. No vLLM needed."""

from __future__ import annotations

import json

import pytest

from ttc_plugins.errors import TTCParamError
from ttc_plugins.vllm_backend.config import EngineConfig, TTCConfigError, parse_engine_config
from ttc_plugins.runtime.wire import RESOLVED_KEY, SALT_PREFIX
from ttc_plugins.vllm_backend.frontend import (
    BEAM_SCHEDULER,
    FrontendState,
    parse_request_params,
    uses_beam_scheduler,
)

H = 8


def steer(**kw):
    return {"control": {"name": "steering", "layers": [1], "vector": [1.0] * H, "scale": 2.0, **kw}}


def test_no_ttc_section_means_plugin_off():
    assert parse_engine_config(None) is None
    assert parse_engine_config({"other": 1}) is None
    assert parse_engine_config({"ttc": {}}) == EngineConfig()
    assert parse_engine_config({"ttc": None}) == EngineConfig()


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"vectorz": {}}, "additional_config.ttc.vectorz"),
        ({"controls": "maybe"}, "additional_config.ttc.controls"),
        ({"plan_cache_size": 0}, "additional_config.ttc.plan_cache_size"),
        ({"vectors": {"a": 3}}, "additional_config.ttc.vectors.a"),
        ([1, 2], "additional_config.ttc"),
        ({"reward_models": {"prm": {}}}, "additional_config.ttc.reward_models.prm.model"),
        ({"reward_models": {"prm": {"model": "/x", "dtyp": "float32"}}}, "additional_config.ttc.reward_models.prm.dtyp"),
        ({"reward_models": {"prm": {"model": "/no/such/prm"}}}, "additional_config.ttc.reward_models.prm.model"),
    ],
)
def test_bad_engine_config_names_the_key(raw, key):
    with pytest.raises(TTCConfigError) as info:
        parse_engine_config({"ttc": raw})
    assert info.value.key == key and str(info.value).startswith(key)


def test_unknown_key_lists_allowed_keys():
    with pytest.raises(TTCConfigError, match="allowed: controls, max_beam_width, plan_cache_size, reward_models, ttc_layers, vectors"):
        parse_engine_config({"ttc": {"nope": 1}})


def test_named_vectors_checked_at_start(tmp_path):
    good = tmp_path / "v.json"
    good.write_text(json.dumps([0.5] * H))
    assert parse_engine_config({"ttc": {"vectors": {"v": str(good)}}}, hidden_size=H).vectors == {"v": str(good)}
    with pytest.raises(TTCConfigError, match=r"vectors\.v: has 8 values; the model's hidden size is 16"):
        parse_engine_config({"ttc": {"vectors": {"v": str(good)}}}, hidden_size=16)
    with pytest.raises(TTCConfigError, match=r"vectors\.w: .*does not exist"):
        parse_engine_config({"ttc": {"vectors": {"w": str(tmp_path / 'missing.npy')}}})


def test_reward_models_are_named_model_directories(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    cfg = parse_engine_config({"ttc": {"reward_models": {"prm": {"model": str(tmp_path), "dtype": "float32"}}}})
    rm = cfg.reward_models["prm"]
    assert (rm.model, rm.dtype, rm.step_tag_id, rm.max_model_len) == (str(tmp_path), "float32", None, 2048)


def _state(config=EngineConfig(), supported=True, **kw):
    return FrontendState(config=config, hidden_size=H, num_layers=4, vocab_size=2048, architecture="LlamaForCausalLM",
                         controls_supported=supported, block_size=128, **kw)


def test_prepare_resolves_control_and_salts_by_config():
    entries, salt = _state().prepare(steer(), "r1", [1, 2, 3])
    assert entries["ttc"] == parse_request_params(steer()).to_json()
    spec = entries[RESOLVED_KEY]
    assert spec["kind"] == "steering" and spec["layers"] == [1] and spec["params"]["scale"] == 2.0
    assert salt.startswith(SALT_PREFIX)
    _, same = _state().prepare(json.dumps(steer()), "r2", [9])  # JSON-string form (vllm_xargs)
    _, other = _state().prepare(steer(scale=3.0), "r3", [1, 2, 3])
    assert same == salt and other != salt


def test_prepare_without_control_does_not_isolate():
    entries, salt = _state().prepare({"decoding": [{"name": "force_token", "token_id": 3}]}, "r", [1])
    assert salt is None and RESOLVED_KEY not in entries
    assert _state().prepare({}, "r", [1])[1] is None


@pytest.mark.parametrize(
    "ttc, field",
    [
        (steer(scale="x"), "ttc.control.scale"),
        (steer(layers=[4]), "ttc.control.layers"),
        ({"control": {"name": "steering", "layers": [0], "vector": [1.0] * 3}}, "ttc.control.vector"),
        ({"control": {"name": "steering", "layers": [0], "vector": "nope"}}, "ttc.control.vector"),
        ("{not json", "ttc"),
        ({"bogus": 1}, "ttc.bogus"),
    ],
)
def test_prepare_errors_name_the_field(ttc, field):
    with pytest.raises(TTCParamError) as info:
        _state().prepare(ttc, "r", [1])
    assert info.value.field == field


def test_control_refused_when_engine_has_no_ttc_section_or_arch_unsupported():
    with pytest.raises(TTCParamError, match="hidden-state control is off"):
        _state(config=None).prepare(steer(), "r", [1])
    with pytest.raises(TTCParamError, match="does not support controls"):
        _state(supported=False).prepare(steer(), "r", [1])
    # decoding-only requests still work on such engines
    assert _state(config=None).prepare({"decoding": [{"name": "ban_tokens", "token_ids": [1]}]}, "r", [1])[1] is None


def test_ttc_layer_adapters_checked_at_start(tmp_path):
    torch = pytest.importorskip("torch")
    from ttc_plugins.ttc_layer.adapter import TTCAdapter
    from ttc_plugins.ttc_layer.config import TTCAdapterConfig

    torch.manual_seed(0)
    path = tmp_path / "a.safetensors"
    TTCAdapter(TTCAdapterConfig(hidden_size=H, heads=1, state_dim=2, control_dim=2, b_rank=2, q_rank=2)).save(path)
    assert parse_engine_config({"ttc": {"ttc_layers": {"1": str(path)}}}, hidden_size=H).ttc_layers == {1: str(path)}
    with pytest.raises(TTCConfigError, match=r"ttc_layers\.1: adapter hidden size"):
        parse_engine_config({"ttc": {"ttc_layers": {"1": str(path)}}}, hidden_size=H + 1)
    with pytest.raises(TTCConfigError, match=r"ttc_layers\.2: TTC adapter file .* does not exist"):
        parse_engine_config({"ttc": {"ttc_layers": {"2": str(tmp_path / "missing.safetensors")}}})
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(TTCConfigError, match=r"ttc_layers\.0: .* not a readable safetensors file"):
        parse_engine_config({"ttc": {"ttc_layers": {"0": str(tmp_path / "junk.safetensors")}}})


def test_beam_needs_the_ttc_scheduler_and_a_width_within_the_limit():
    from dataclasses import replace

    on = replace(_state(), beam_scheduler=True, max_beam_width=4)
    entries, salt = on.prepare({"beam": {"width": 4}}, "r", [1])
    assert entries["ttc"]["beam"]["width"] == 4 and salt is None
    with pytest.raises(TTCParamError, match=r"above this engine's limit of 4") as info:
        on.prepare({"beam": {"width": 5}}, "r", [1])
    assert info.value.field == "ttc.beam.width"
    with pytest.raises(TTCParamError, match="--scheduler-cls " + BEAM_SCHEDULER.replace(".", r"\.")) as info:
        _state().prepare({"beam": {"width": 2}}, "r", [1])
    assert info.value.field == "ttc.beam"


def test_beam_scheduler_recognised_by_name_or_class():
    from types import SimpleNamespace

    assert uses_beam_scheduler(SimpleNamespace(scheduler_cls=BEAM_SCHEDULER))
    assert uses_beam_scheduler(SimpleNamespace(scheduler_cls=BEAM_SCHEDULER.rsplit(".", 1)[0] + ":TTCScheduler"))
    assert not uses_beam_scheduler(SimpleNamespace(scheduler_cls="vllm.v1.core.sched.scheduler.Scheduler"))
    assert not uses_beam_scheduler(SimpleNamespace(scheduler_cls=None))


def test_control_refused_where_the_worker_replays_cuda_graphs():
    state = _state(cuda_graphs=True)
    with pytest.raises(TTCParamError, match="--enforce-eager") as info:
        state.prepare(steer(), "r", [1])
    assert info.value.field == "ttc.control"
    assert state.prepare({"decoding": [{"name": "ban_tokens", "token_ids": [1]}]}, "r", [1])[1] is None


@pytest.mark.parametrize("device, eager, mode, replays", [
    ("cuda", False, "FULL_AND_PIECEWISE", True),
    ("cuda", True, "FULL_AND_PIECEWISE", False),
    ("cuda", False, "NONE", False),
    ("cpu", False, "FULL_AND_PIECEWISE", False),
])
def test_replays_cuda_graphs(device, eager, mode, replays):
    from types import SimpleNamespace

    from ttc_plugins.vllm_backend.frontend import replays_cuda_graphs

    cfg = SimpleNamespace(device_config=SimpleNamespace(device_type=device),
                          model_config=SimpleNamespace(enforce_eager=eager),
                          compilation_config=SimpleNamespace(cudagraph_mode=SimpleNamespace(name=mode)))
    assert replays_cuda_graphs(cfg) is replays
