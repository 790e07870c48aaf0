"""Frontend preparation and worker re-parsing of the per-request ``ttc`` JSON (engine-free)."""

from __future__ import annotations

import json

import pytest
from ttc_plugins.sglang_backend.requests import (
    check_beam,
    RESOLVED_KEY,
    SALT_PREFIX,
    ModelInfo,
    combine_salt,
    context_from_custom_params,
    finish_reason_name,
    kv_stats,
    prepare_request,
    strip_resolved,
)

from ttc_plugins.controls.vectors import VectorLibrary
from ttc_plugins.errors import TTCParamError
from ttc_plugins.types import ControlSpec, KVStats

MODEL = ModelInfo(hidden_size=4, num_layers=3)
STEER = {"control": {"name": "steering", "layers": [1], "vector": [1.0, 0.0, 0.0, 0.0], "scale": 2.0}}


def test_plain_request_is_not_prepared(pm):
    assert prepare_request(pm, "r", None, None, (), MODEL) is None
    assert prepare_request(pm, "r", {"other": 1}, "salt", (), MODEL) is None


def test_steered_request_gets_canonical_json_resolved_control_and_salt(pm):
    out = prepare_request(pm, "r1", {"ttc": STEER, "keep": 3}, "user-salt", [5, 6], MODEL)
    spec = out.ctx.control
    assert isinstance(spec, ControlSpec) and spec.layers == (1,)
    assert out.custom_params["keep"] == 3
    assert out.custom_params["ttc"] == pm.parse_params(STEER).to_json()
    assert out.custom_params[RESOLVED_KEY] == spec.to_json()
    assert out.cache_salt == f"user-salt|{SALT_PREFIX}{spec.key}"
    json.dumps(out.custom_params)  # JSON-only on the wire
    assert out.ctx.engine == "sglang" and out.ctx.prompt_token_ids == (5, 6)


def test_decoding_only_request_shares_the_plain_cache(pm):
    out = prepare_request(pm, "r", {"ttc": {"decoding": [{"name": "force_token", "token_id": 1}]}}, None, (), MODEL)
    assert out.cache_salt is None and RESOLVED_KEY not in out.custom_params


def test_distinct_controls_get_distinct_salts_equal_ones_share(pm):
    a = prepare_request(pm, "a", {"ttc": STEER}, None, (), MODEL).cache_salt
    b = prepare_request(pm, "b", {"ttc": STEER}, None, (), MODEL).cache_salt
    other = {"control": {**STEER["control"], "scale": 3.0}}
    c = prepare_request(pm, "c", {"ttc": other}, None, (), MODEL).cache_salt
    assert a == b != c


def test_client_supplied_resolved_control_is_dropped(pm):
    forged = {RESOLVED_KEY: {"kind": "steering", "layers": [0], "params": {}}}
    assert strip_resolved(forged) == {}
    out = prepare_request(pm, "r", {**forged, "ttc": {"decoding": [{"name": "ban_tokens", "token_ids": [1]}]}}, None, (), MODEL)
    assert RESOLVED_KEY not in out.custom_params


@pytest.mark.parametrize(
    "ttc, field",
    [
        ({"control": {"name": "nope"}}, "ttc.control.name"),
        ({"control": {**STEER["control"], "vector": [1.0] * 5}}, "ttc.control.vector"),
        ({"control": {**STEER["control"], "layers": [3]}}, "ttc.control.layers"),
        ({"decoding": [{"name": "force_token"}]}, "ttc.decoding.0.token_id"),
        ({"bogus": 1}, "ttc.bogus"),
        ("not an object", "ttc"),
        ({"search": {"strategy": "beam"}}, "ttc.search"),  # a search is never one plain generation
    ],
)
def test_invalid_params_name_the_field(pm, ttc, field):
    with pytest.raises(TTCParamError) as err:
        prepare_request(pm, "r", {"ttc": ttc}, None, (), MODEL)
    assert err.value.field == field


def test_named_vector_resolves_from_the_server_library(pm, tmp_path):
    path = tmp_path / "v.json"
    path.write_text("[0.5, 0.5, 0.5, 0.5]")
    model = ModelInfo(hidden_size=4, num_layers=3, vectors=VectorLibrary({"honest": str(path)}))
    out = prepare_request(pm, "r", {"ttc": {"control": {**STEER["control"], "vector": "honest"}}}, None, (), model)
    assert out.ctx.control.args["vector"] == [0.5, 0.5, 0.5, 0.5]
    with pytest.raises(TTCParamError) as err:
        prepare_request(pm, "r", {"ttc": {"control": {**STEER["control"], "vector": "missing"}}}, None, (), model)
    assert err.value.field == "ttc.control.vector"


def test_worker_rebuilds_the_same_context(pm):
    out = prepare_request(pm, "r", {"ttc": {**STEER, "decoding": [{"name": "force_token", "token_id": 2}]}}, None, [1], MODEL)
    ctx = context_from_custom_params(pm, "r", out.custom_params, [1])
    assert ctx.control == out.ctx.control and ctx.params == out.ctx.params
    assert context_from_custom_params(pm, "r", {"other": 1}) is None
    assert context_from_custom_params(pm, "r", None) is None


def test_combine_salt():
    assert combine_salt(None, None) is None
    assert combine_salt("u", None) == "u"
    assert combine_salt(None, "ttc:k") == "ttc:k"
    assert combine_salt("u", "ttc:k") == "u|ttc:k"


def test_kv_stats_and_finish_reason():
    assert kv_stats(10, 4, 3, 1) == KVStats(tokens_computed=9, tokens_reused=4, blocks_held=13, peak_blocks=13)
    assert kv_stats(10, 50, 0, 4) == KVStats(tokens_computed=0, tokens_reused=10, blocks_held=3, peak_blocks=3)
    assert finish_reason_name({"type": "length", "length": 3}) == "length"
    assert finish_reason_name(None) is None and finish_reason_name("stop") == "stop"


@pytest.mark.parametrize("kw, field", [
    ({"width": 17}, "ttc.beam.width"),
    ({"n": 2}, "n"),
    ({"stop_strs": ["\n"]}, "stop"),
    ({"return_logprob": True}, "return_logprob"),
    ({"beam_width": 4}, "beam_width"),
])
def test_check_beam_names_the_field(kw, field):
    args = {"width": 2, "max_width": 16, "n": 1, "stop_strs": None, "return_logprob": False, "beam_width": None, **kw}
    with pytest.raises(TTCParamError) as exc:
        check_beam(**args)
    assert exc.value.field == field


def test_check_beam_sends_at_least_two_rows():
    assert check_beam(1, 16, 1, None, False, None) == 2  # SGLang has no 1-wide beam group
    assert check_beam(5, 16, None, [], False, 1) == 5
