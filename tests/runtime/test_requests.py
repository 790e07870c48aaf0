"""The request rules every engine shares: validate against the engine's facts, resolve, salt,
write the wire payload, rebuild the context in the worker (engine-free)."""

from __future__ import annotations

import json

import pytest

from ttc_plugins.controls.vectors import VectorLibrary
from ttc_plugins.errors import TTCParamError
from ttc_plugins.runtime.requests import combine_salt, context_from_wire, prepare_request, without_private
from ttc_plugins.runtime.wire import PRIVATE_KEYS, RESOLVED_KEY, SALT_PREFIX, TTC_KEY
from ttc_plugins.types import ControlSpec, EngineFacts

FACTS = EngineFacts(hidden_size=4, num_layers=3, vocab_size=32)
STEER = {"control": {"name": "steering", "layers": [1], "vector": [1.0, 0.0, 0.0, 0.0], "scale": 2.0}}


def prepare(pm, raw, facts=FACTS, salt=None, request_id="r", prompt=()):
    return prepare_request(pm, raw, request_id=request_id, prompt_token_ids=prompt, facts=facts, engine="test",
                           cache_salt=salt)


def test_plain_request_is_not_prepared(pm):
    assert prepare(pm, None) is None


def test_steered_request_gets_canonical_json_resolved_control_and_salt(pm):
    out = prepare(pm, STEER, salt="user-salt", request_id="r1", prompt=[5, 6])
    spec = out.ctx.control
    assert isinstance(spec, ControlSpec) and spec.layers == (1,)
    assert out.wire == {TTC_KEY: pm.parse_params(STEER).to_json(), RESOLVED_KEY: spec.to_json()}
    assert out.cache_salt == f"user-salt|{SALT_PREFIX}{spec.key}"
    json.dumps(out.wire)  # JSON-only on the wire
    assert out.ctx.engine == "test" and out.ctx.prompt_token_ids == (5, 6) and out.ctx.facts is FACTS


def test_json_text_form_is_the_same_request(pm):
    assert prepare(pm, json.dumps(STEER)).cache_salt == prepare(pm, STEER).cache_salt
    with pytest.raises(TTCParamError) as err:
        prepare(pm, "null")
    assert err.value.field == "ttc"


def test_decoding_only_request_shares_the_plain_cache(pm):
    out = prepare(pm, {"decoding": [{"name": "force_token", "token_id": 1}]})
    assert out.cache_salt is None and RESOLVED_KEY not in out.wire


def test_distinct_controls_get_distinct_salts_equal_ones_share(pm):
    other = {"control": {**STEER["control"], "scale": 3.0}}
    assert prepare(pm, STEER).cache_salt == prepare(pm, STEER, request_id="b").cache_salt != prepare(pm, other).cache_salt


def test_client_supplied_private_keys_are_dropped():
    forged = {RESOLVED_KEY: {"kind": "steering", "layers": [0], "params": {}}, "_ttc_request_id": "x", "keep": 1}
    assert without_private(forged) == {"keep": 1} and set(PRIVATE_KEYS) <= set(forged)
    assert without_private(None) == {}


@pytest.mark.parametrize(
    "ttc, field",
    [
        ({"control": {"name": "nope"}}, "ttc.control.name"),
        ({"control": {**STEER["control"], "vector": [1.0] * 5}}, "ttc.control.vector"),
        ({"control": {**STEER["control"], "layers": [3]}}, "ttc.control.layers"),
        ({"decoding": [{"name": "force_token"}]}, "ttc.decoding.0.token_id"),
        ({"decoding": [{"name": "force_token", "token_id": 32}]}, "ttc.decoding.0.token_id"),  # past the vocab
        ({"control": {"name": "ttc_layer", "layers": [1], "horizon": 4}}, "ttc.control.layers"),  # no adapter hosted
        ({"bogus": 1}, "ttc.bogus"),
        ("[1]", "ttc"),
    ],
)
def test_invalid_params_name_the_field(pm, ttc, field):
    with pytest.raises(TTCParamError) as err:
        prepare(pm, ttc)
    assert err.value.field == field


@pytest.mark.parametrize("feature, ttc", [
    ("ttc.control", STEER),
    ("ttc.decoding", {"decoding": [{"name": "ban_tokens", "token_ids": [1]}]}),
    ("ttc.search", {"search": {"strategy": "beam"}}),
    ("ttc.beam", {"beam": {"width": 2}}),
])
def test_a_feature_the_engine_cannot_honour_is_refused_with_its_reason(pm, feature, ttc):
    facts = EngineFacts(hidden_size=4, num_layers=3, refused={feature: "not on this engine: start it with --x"})
    with pytest.raises(TTCParamError) as err:
        prepare(pm, ttc, facts=facts)
    assert err.value.field == feature and "start it with --x" in str(err.value)
    assert prepare(pm, {"decoding": []} if feature != "ttc.decoding" else STEER, facts=facts) is not None


def test_beam_width_is_bounded_by_the_engine_naming_the_limit(pm):
    facts = EngineFacts(max_beam_width=4, beam_width_limits="max_beam_width sets it")
    assert prepare(pm, {"beam": {"width": 4}}, facts=facts).ctx.params.beam.width == 4
    with pytest.raises(TTCParamError, match=r"above this engine's limit of 4 \(max_beam_width sets it\)") as err:
        prepare(pm, {"beam": {"width": 5}}, facts=facts)
    assert err.value.field == "ttc.beam.width"


def test_named_vector_resolves_from_the_server_library(pm, tmp_path):
    path = tmp_path / "v.json"
    path.write_text("[0.5, 0.5, 0.5, 0.5]")
    facts = EngineFacts(hidden_size=4, num_layers=3, vectors=VectorLibrary({"honest": str(path)}))
    out = prepare(pm, {"control": {**STEER["control"], "vector": "honest"}}, facts=facts)
    assert out.ctx.control.args["vector"] == [0.5, 0.5, 0.5, 0.5]
    with pytest.raises(TTCParamError) as err:
        prepare(pm, {"control": {**STEER["control"], "vector": "missing"}}, facts=facts)
    assert err.value.field == "ttc.control.vector"


def test_worker_rebuilds_the_same_context(pm):
    out = prepare(pm, {**STEER, "decoding": [{"name": "force_token", "token_id": 2}]}, prompt=[1])
    ctx = context_from_wire(pm, {**out.wire, "other": 1}, request_id="r", prompt_token_ids=[1], engine="test")
    assert ctx.control == out.ctx.control and ctx.params == out.ctx.params and ctx.prompt_token_ids == (1,)
    assert context_from_wire(pm, {"other": 1}, request_id="r", prompt_token_ids=(), engine="test") is None
    assert context_from_wire(pm, None, request_id="r", prompt_token_ids=(), engine="test") is None


def test_combine_salt_keeps_the_clients_salt():
    assert combine_salt(None, None) is None
    assert combine_salt("u", None) == "u"
    assert combine_salt(None, "ttc:k") == "ttc:k"
    assert combine_salt("u", "ttc:k") == "u|ttc:k"
