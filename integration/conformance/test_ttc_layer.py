"""The TTC layer served per request from the adapter file the engine hosts (trained in this test
session, :mod:`integration.common.adapters`): the same tokens as HF transformers with the adapter,
in a batch mixed with adapter-off and steered requests; per-request horizons; cache isolation per
adapter configuration; refusals that name the field while the engine serves on."""

from __future__ import annotations

import re
import uuid

import pytest

from integration.common import adapters, scenarios
from integration.common.scenarios import ttc_layer

N = scenarios.MAX_TOKENS


def test_adapter_requests_match_hf_in_a_batch_mixed_with_plain_and_steered(engine_generate, reference):
    prompts = scenarios.PROMPTS[:len(scenarios.TTC_LAYER_TTCS)]
    got = engine_generate(prompts, scenarios.TTC_LAYER_TTCS, N)
    scenarios.assert_matches(got, reference(prompts, scenarios.TTC_LAYER_TTCS, N), "ttc_layer batch")
    # adapter off and horizon 0 are bit-identical to the same batch sent all plain (the same batch
    # shape: an engine's kernels need not give the same bits for another batch size)
    plain = engine_generate(prompts, [None] * len(prompts), N)
    scenarios.assert_bit_identical([got[0], got[3]], [plain[0], plain[3]], "adapter off / horizon 0")
    # the trained adapter changes what it touches (its gate is open), at each horizon differently
    assert got[1] != plain[1] and got[2] != plain[2]
    other_horizon = engine_generate([prompts[1]], [ttc_layer(24)], N)[0]
    scenarios.assert_matches([other_horizon], reference([prompts[1]], [ttc_layer(24)], N), "horizon 24")
    assert other_horizon[1] != got[1][1]


def test_each_adapter_configuration_has_its_own_prefix_cache(engine_generate_served, reference):
    salt = f"ttc-layer-{uuid.uuid4().hex}"
    long = scenarios.LONG_PROMPT

    def served(ttc):
        (row,) = engine_generate_served([long], [ttc], 4, cache_salt=salt)
        return row

    plain, h8, h24, h8_again = served(None), served(ttc_layer(8)), served(ttc_layer(24)), served(ttc_layer(8))
    scenarios.assert_matches([h8[:2], h24[:2]], reference([long] * 2, [ttc_layer(8), ttc_layer(24)], 4), "long")
    assert plain[2] is None
    assert h8[3] == 0 and h24[3] == 0, (h8[2:], h24[2:])  # nothing computed without / at another horizon
    assert h8_again[3] >= len(long) // 2 and h8_again[2]["kv"]["tokens_reused"] == h8_again[3]
    assert h8[2]["control_key"] == h8_again[2]["control_key"] != h24[2]["control_key"]


@pytest.mark.parametrize(("ttc", "field", "says"), [
    (ttc_layer(8, layers=(2,)), "ttc.control.layers", rf"no TTC adapter at layer\(s\) \[2\]; adapters at: {adapters.LAYER}"),
    (ttc_layer(64), "ttc.control.horizon", r"64 is outside the range the adapter at layer 1 was trained at \(8\.\.24\)"),
    (ttc_layer(4), "ttc.control.horizon", r"4 is outside"),
])
def test_a_layer_without_adapter_or_a_horizon_out_of_range_is_refused(engine_generate, ttc, field, says):
    # each engine's own request error (vLLM: VLLMValidationError; SGLang: ValueError), naming the field
    with pytest.raises(Exception, match=re.escape(field) + ": " + says):
        engine_generate(scenarios.PROMPTS[:1], [ttc], 2)
    assert len(engine_generate(scenarios.PROMPTS[:1], [None], 2)[0][0]) == 2


def test_an_adapter_file_that_does_not_fit_stops_the_engine_at_start(engine_start_error, engine_settings_key,
                                                                     tmp_path):
    from ttc_plugins.ttc_layer.adapter import TTCAdapter
    from ttc_plugins.ttc_layer.config import TTCAdapterConfig

    other = tmp_path / "hidden64.safetensors"
    TTCAdapter(TTCAdapterConfig(hidden_size=64, heads=1, state_dim=2, control_dim=2, b_rank=2, q_rank=2)).save(other)
    err = engine_start_error({"ttc_layers": {"1": str(other)}})
    assert f"{engine_settings_key}.ttc_layers.1: adapter hidden size 64 != the model's {scenarios.HIDDEN}" in err, err[-3000:]
    err = engine_start_error({"ttc_layers": {"1": str(tmp_path / "missing.safetensors")}})
    assert f"{engine_settings_key}.ttc_layers.1: TTC adapter file" in err and "does not exist" in err, err[-3000:]
