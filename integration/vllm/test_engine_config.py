"""Engine-wide settings (additional_config.ttc) and per-request validation in the frontend."""

from __future__ import annotations

import pytest
import ttc_vllm_engine as engine

from integration.common import scenarios


@pytest.mark.parametrize(
    "ttc, key",
    [
        ({"vectorz": {}}, "additional_config.ttc.vectorz"),
        ({"controls": "maybe"}, "additional_config.ttc.controls"),
        ({"vectors": {"x": "/nonexistent/x.npy"}}, "additional_config.ttc.vectors.x"),
    ],
)
def test_bad_engine_config_stops_engine_at_start(tiny_model, ttc, key):
    from vllm import LLM

    with pytest.raises(Exception) as info:
        LLM(**engine.engine_kwargs(tiny_model, eager=True, ttc=ttc))
    assert key in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "ttc, field",
    [
        ({"control": {"name": "steering", "layers": [1], "vector": [1.0] * 128, "scale": "big"}}, "ttc.control.scale"),
        ({"control": {"name": "steering", "layers": [9], "vector": [1.0] * 128}}, "ttc.control.layers"),
        ({"control": {"name": "steering", "layers": [1], "vector": [1.0] * 3}}, "ttc.control.vector"),
        ({"control": {"name": "nope"}}, "ttc.control.name"),
        ({"decoding": [{"name": "force_token", "token_id": -1}]}, "ttc.decoding.0.token_id"),
        ({"controls": {}}, "ttc.controls"),
        ({"control": {"name": "steering", "layers": [0], "vector": "missing"}}, "ttc.control.vector"),
    ],
)
def test_bad_request_params_are_rejected_naming_the_field(eager_llm, ttc, field):
    from vllm.exceptions import VLLMValidationError

    with pytest.raises(VLLMValidationError, match=field.replace(".", r"\.")) as info:
        engine.generate(eager_llm, scenarios.PROMPTS[:1], [ttc], 2)
    assert info.value.parameter == field
    # the engine keeps serving
    assert len(engine.generate(eager_llm, scenarios.PROMPTS[:1], [None], 2)[0][0]) == 2


def test_private_keys_cannot_be_injected(eager_llm, reference):
    """A client cannot smuggle a resolved control past validation through extra_args."""
    from vllm import SamplingParams

    bogus = {"kind": "steering", "layers": [1], "params": {"vector": [9.0] * 128, "scale": 9.0, "mode": "add",
                                                           "preserve_norm": False}}
    sp = SamplingParams(max_tokens=4, temperature=0.0, logprobs=0, ignore_eos=True,
                        extra_args={"_ttc_control": bogus})
    out = eager_llm.generate([{"prompt_token_ids": scenarios.PROMPTS[0]}], sp, use_tqdm=False)[0].outputs[0]
    assert list(out.token_ids) == reference(scenarios.PROMPTS[:1], [None], 4)[0][0]
