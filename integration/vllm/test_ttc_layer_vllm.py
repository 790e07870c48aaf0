"""vLLM-only parts of the TTC layer (the rest is ``integration/conformance/test_ttc_layer.py``):
the adapter under torch.compile, and the refusal as vLLM's validation error with its parameter."""

from __future__ import annotations

import pytest
import ttc_vllm_engine as engine

from integration.common import scenarios


def test_ttc_layer_batch_under_torch_compile_matches_hf(compiled_run, reference):
    result, _ = compiled_run
    rows = [(r["token_ids"], r["logprobs"]) for r in result["batches"][-1]]
    prompts = scenarios.PROMPTS[:len(scenarios.TTC_LAYER_TTCS)]
    scenarios.assert_matches(rows, reference(prompts, scenarios.TTC_LAYER_TTCS, scenarios.MAX_TOKENS),
                             "compiled ttc_layer batch")


def test_ttc_layer_refusal_is_a_validation_error_naming_the_parameter(eager_llm):
    from vllm.exceptions import VLLMValidationError

    with pytest.raises(VLLMValidationError) as info:
        engine.generate(eager_llm, scenarios.PROMPTS[:1], [scenarios.ttc_layer(8, layers=(2,))], 2)
    assert info.value.parameter == "ttc.control.layers"
