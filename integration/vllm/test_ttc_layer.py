"""The TTC-layer hook point: per-request horizons through an adapter hosted by the engine."""

from __future__ import annotations

import pytest
import ttc_vllm_engine as engine

from integration.common import scenarios


def _ttc(horizon: int, scale: float = 1.0, layers=(1,)) -> dict:
    return {"control": {"name": "ttc_layer", "layers": list(layers), "horizon": horizon, "scale": scale}}


def test_ttc_layer_requests_match_hf_reference_in_a_mixed_batch(eager_llm, reference):
    prompts = scenarios.PROMPTS[:4]
    ttcs = [None, _ttc(8), _ttc(24, scale=2.0), _ttc(0)]
    got = engine.generate(eager_llm, prompts, ttcs, scenarios.MAX_TOKENS)
    scenarios.assert_matches(got, reference(prompts, ttcs, scenarios.MAX_TOKENS), "ttc_layer batch")
    # horizon 0 is off: bit-identical to the plain request on the same prompt in the same engine
    plain = engine.generate(eager_llm, [prompts[3]], [None], scenarios.MAX_TOKENS)
    scenarios.assert_bit_identical([got[3]], plain, "horizon 0")
    # and the adapter changes what it touches
    assert got[2] != engine.generate(eager_llm, [prompts[2]], [None], scenarios.MAX_TOKENS)[0]


def test_ttc_layer_at_a_layer_without_adapter_is_rejected(eager_llm):
    from vllm.exceptions import VLLMValidationError

    with pytest.raises(VLLMValidationError, match=r"ttc\.control\.layers: no TTC adapter at layer\(s\) \[2\]") as info:
        engine.generate(eager_llm, scenarios.PROMPTS[:1], [_ttc(8, layers=(2,))], 2)
    assert info.value.parameter == "ttc.control.layers"
    assert len(engine.generate(eager_llm, scenarios.PROMPTS[:1], [None], 2)[0][0]) == 2
