"""load_hosted: the one rule both engines use to load the adapters they host."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ttc_plugins.engine_config import EngineConfigBase, TTCConfigError  # noqa: E402
from ttc_plugins.ttc_layer.adapter import TTCAdapter, save_adapters  # noqa: E402
from ttc_plugins.ttc_layer.config import TTCAdapterConfig  # noqa: E402
from ttc_plugins.ttc_layer.hosting import load_hosted  # noqa: E402

H = 8
BASE = {"name": "tiny", "model_type": "llama", "hidden_size": H, "num_hidden_layers": 4, "vocab_size": 32}


def _file(tmp_path, layers=(1, 3), hidden=H, base=BASE, horizon=(4, 16)):
    torch.manual_seed(0)
    cfg = TTCAdapterConfig(hidden_size=hidden, heads=1, state_dim=2, control_dim=2, b_rank=2, q_rank=2)
    adapters = {i: TTCAdapter(cfg) for i in layers}
    for a in adapters.values():
        torch.nn.init.normal_(a.gate)
    path = tmp_path / "adapters.safetensors"
    save_adapters(path, adapters, base_model=base, horizon=horizon)
    return path, adapters


def test_loads_each_layers_adapter_exactly_frozen_and_in_eval_mode(tmp_path):
    path, saved = _file(tmp_path)
    hosted = load_hosted({3: str(path), 1: str(path)}, root="X", hidden_size=H, num_layers=4, device="cpu")
    assert sorted(hosted) == [1, 3]
    for layer, adapter in hosted.items():
        assert not adapter.training and not any(p.requires_grad for p in adapter.parameters())
        for name, value in saved[layer].state_dict().items():
            assert torch.equal(adapter.state_dict()[name], value), (layer, name)


@pytest.mark.parametrize(("layers", "kw", "says"), [
    ({4: "F"}, {}, r"X\.ttc_layers\.4: the model has 4 decoder layers \(0\.\.3\)"),
    ({1: "F"}, {"hidden_size": H + 1}, r"X\.ttc_layers\.1: adapter hidden size 8 != the model's 9"),
    ({1: "F"}, {"num_layers": 6}, r"X\.ttc_layers\.1: trained on 'tiny' \(num_hidden_layers 4\); this model has"),
])
def test_a_file_that_does_not_fit_the_model_stops_the_start_naming_the_key(tmp_path, layers, kw, says):
    path, _ = _file(tmp_path)
    args = {"hidden_size": H, "num_layers": 4, **kw}
    with pytest.raises(ValueError, match=says):
        load_hosted({k: str(path) for k in layers}, root="X", device="cpu", **args)


def test_engine_settings_read_the_files_and_their_horizon_ranges(tmp_path):
    path, _ = _file(tmp_path)
    cfg = EngineConfigBase(ttc_layers={1: str(path), 3: str(path)})
    cfg.check_ttc_layers("X", hidden_size=H)
    assert cfg.hosted_horizons() == {1: (4, 16), 3: (4, 16)}
    # what both frontends tell the request checks: the hosted layers, in order, with their ranges
    facts = cfg.control_facts()
    assert facts["ttc_layers"] == (1, 3) and facts["ttc_horizons"] == {1: (4, 16), 3: (4, 16)}
    assert facts["vectors"].names() == []
    with pytest.raises(TTCConfigError, match=r"X\.ttc_layers\.2: .* holds TTC adapters for decoder layers \[1, 3\], not 2"):
        EngineConfigBase(ttc_layers={2: str(path)}).check_ttc_layers("X")
    with pytest.raises(TTCConfigError, match=r"X\.ttc_layers\.1: adapter hidden size"):
        cfg.check_ttc_layers("X", hidden_size=H * 2)
    with pytest.raises(TTCConfigError, match=r"X\.ttc_layers\.1: TTC adapter file .* does not exist"):
        EngineConfigBase(ttc_layers={1: str(tmp_path / "gone.safetensors")}).check_ttc_layers("X")
