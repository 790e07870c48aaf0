"""Requests carry JSON only: a pickled custom_logit_processor is refused and the engine survives."""

from __future__ import annotations

import json
import pickle

import pytest
import ttc_sglang_engine as helpers

from integration.common import scenarios
from ttc_plugins.errors import TTCParamError


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: proof that bytes from a request were executed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickle_payload(marker) -> str:
    # SGLang's CustomLogitProcessor.to_str() wire format: {"callable": <hex of dill/pickle bytes>}
    return json.dumps({"callable": pickle.dumps(_Payload(str(marker))).hex()})


def test_pickle_payload_is_rejected_and_engine_serves_the_next_request(engine, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(ValueError, match="refuses requests carrying custom_logit_processor"):
        engine.generate(input_ids=scenarios.PROMPTS[0], sampling_params=helpers.sampling(None, 3),
                        custom_logit_processor=pickle_payload(marker))
    assert not marker.exists(), "the request's pickle was executed"
    out = helpers.generate_raw(engine, [scenarios.PROMPTS[1]], [scenarios.FORCE], 3)[0]
    assert out["output_ids"] == [42, 42, 42]


def test_invalid_ttc_params_name_the_field_and_never_reach_the_scheduler(engine):
    bad = {"control": {"name": "steering", "layers": [1], "vector": [1.0] * 7, "scale": 1.0}}
    with pytest.raises(TTCParamError) as err:
        helpers.generate_raw(engine, [scenarios.PROMPTS[0]], [bad], 2)
    assert err.value.field == "ttc.control.vector"
    with pytest.raises(TTCParamError) as err:
        helpers.generate_raw(engine, [scenarios.PROMPTS[0]], [{"decoding": [{"name": "pickle"}]}], 2)
    assert err.value.field == "ttc.decoding.0.name"
    with pytest.raises(TTCParamError) as err:
        helpers.generate_raw(engine, [scenarios.PROMPTS[0]], [{"control": {**scenarios.STEER_A["control"], "layers": [9]}}], 2)
    assert err.value.field == "ttc.control.layers"
    assert helpers.generate_raw(engine, [scenarios.PROMPTS[0]], [None], 2)[0]["output_ids"]


def test_client_cannot_inject_a_resolved_control(engine, reference):
    """The frontend-only key is dropped from client input: a plain request stays plain."""
    forged = {"max_new_tokens": 4, "ignore_eos": True, "temperature": 0.0,
              "custom_params": {"_ttc_control": {"kind": "steering", "layers": [1],
                                                 "params": {"vector": [50.0] * 128, "scale": 9.0, "mode": "add",
                                                            "preserve_norm": False}}}}
    out = engine.generate(input_ids=scenarios.PROMPTS[2], sampling_params=forged, return_logprob=True,
                          cache_salt="forged")
    scenarios.assert_matches(helpers.rows([out]), reference([scenarios.PROMPTS[2]], [None], 4), "forged control")
