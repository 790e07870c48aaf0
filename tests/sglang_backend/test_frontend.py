"""SGLang-only frontend rules: a ``ttc.beam`` request against SGLang's own sampling settings, and
finish reasons (engine-free; the shared request rules are tested in ``tests/runtime``)."""

from __future__ import annotations

import pytest

from ttc_plugins.errors import TTCParamError
from ttc_plugins.sglang_backend.frontend import beam_rows, check_beam, finish_reason_name


@pytest.mark.parametrize("kw, field", [
    ({"n": 2}, "n"),
    ({"stop_strs": ["\n"]}, "stop"),
    ({"return_logprob": True}, "return_logprob"),
    ({"beam_width": 4}, "beam_width"),
])
def test_check_beam_names_the_field(kw, field):
    args = {"n": 1, "stop_strs": None, "return_logprob": False, "beam_width": None, **kw}
    with pytest.raises(TTCParamError) as exc:
        check_beam(**args)
    assert exc.value.field == field


def test_check_beam_sends_at_least_two_rows():
    assert beam_rows(1) == 2  # SGLang has no 1-wide beam group
    assert beam_rows(5) == 5
    check_beam(None, [], False, 1)  # nothing to refuse


def test_finish_reason_name():
    assert finish_reason_name({"type": "length", "length": 3}) == "length"
    assert finish_reason_name(None) is None and finish_reason_name("stop") == "stop"


def test_facts_list_the_hosted_adapters_unless_controls_are_refused(tmp_path, pm):
    torch = pytest.importorskip("torch")
    from types import SimpleNamespace

    from ttc_plugins.sglang_backend.config import EngineConfig
    from ttc_plugins.sglang_backend.frontend import FrontendState
    from ttc_plugins.ttc_layer.adapter import TTCAdapter, save_adapters
    from ttc_plugins.ttc_layer.config import TTCAdapterConfig

    torch.manual_seed(0)
    path = tmp_path / "a.safetensors"
    save_adapters(path, {2: TTCAdapter(TTCAdapterConfig(hidden_size=8, heads=1, state_dim=2, control_dim=2,
                                                        b_rank=2, q_rank=2))}, horizon=(1, 64))
    hf = SimpleNamespace(hidden_size=8, num_hidden_layers=4, vocab_size=32)
    tm = SimpleNamespace(model_config=SimpleNamespace(hf_config=hf, hf_text_config=hf, vocab_size=32),
                         server_args=SimpleNamespace(device="cpu"))
    facts = FrontendState(pm, EngineConfig(ttc_layers={2: str(path)})).facts(tm)
    assert facts.ttc_layers == (2,) and facts.ttc_horizons == {2: (1, 64)} and "ttc.control" not in facts.refused
    off = FrontendState(pm, EngineConfig(ttc_layers={2: str(path)}, controls=False)).facts(tm)
    assert off.ttc_layers == () and "ttc.control" in off.refused
