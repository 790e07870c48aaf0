"""Per-request ``ttc`` parameters: validation errors name the field."""

from __future__ import annotations

import pytest

from ttc_plugins.errors import TTCParamError


def test_absent_means_not_opted_in(pm):
    assert pm.parse_params(None) is None


def test_round_trip_through_json(pm):
    raw = {
        "control": {"name": "steering", "layers": [1, 0], "vector": [0.5, -1], "scale": 2},
        "decoding": [{"name": "force_token", "token_id": 7}],
    }
    params = pm.parse_params(raw)
    again = pm.parse_params(params.to_json())
    assert again == params
    assert params.to_json()["decoding"] == [{"name": "force_token", "token_id": 7, "max_forced": None}]


@pytest.mark.parametrize(
    "raw, field",
    [
        ("steer please", "ttc"),
        ({"contrl": {}}, "ttc.contrl"),
        ({"control": {"layers": [1]}}, "ttc.control.name"),
        ({"control": {"name": "nope"}}, "ttc.control.name"),
        ({"control": {"name": "steering", "layers": [1], "vector": [1.0], "scale": "big"}}, "ttc.control.scale"),
        ({"control": {"name": "steering", "layers": [-1], "vector": [1.0]}}, "ttc.control.layers"),
        ({"control": {"name": "steering", "layers": [], "vector": [1.0]}}, "ttc.control.layers"),
        ({"control": {"name": "steering", "layers": [0], "vector": [1.0], "colour": 1}}, "ttc.control.colour"),
        ({"control": {"name": "steering", "layers": [0], "vector": [1.0], "mode": "mul"}}, "ttc.control.mode"),
        ({"decoding": [{"name": "force_token"}]}, "ttc.decoding.0.token_id"),
        ({"decoding": [{"name": "force_token", "token_id": 1}, {"name": "x"}]}, "ttc.decoding.1.name"),
        ({"decoding": "force_token"}, "ttc.decoding"),
        ({"search": {"strategy": "nosuch"}}, "ttc.search.strategy"),
        ({"beam": {"width": 0}}, "ttc.beam.width"),
        ({"beam": {}}, "ttc.beam.width"),
        ({"beam": {"width": 2, "early_stopping": "sometimes"}}, "ttc.beam.early_stopping"),
        ({"beam": {"width": 2, "beams": 1}}, "ttc.beam.beams"),
        ({"beam": 4}, "ttc.beam"),
        ({"beam": {"width": 2}, "decoding": [{"name": "force_token", "token_id": 1}]}, "ttc.beam"),
        # strict types: no string-to-number or number-to-bool coercion
        ({"search": {"strategy": "beam", "width": "4"}}, "ttc.search.width"),
        ({"decoding": [{"name": "force_token", "token_id": "42"}]}, "ttc.decoding.0.token_id"),
        ({"decoding": [{"name": "force_token", "token_id": 4.0}]}, "ttc.decoding.0.token_id"),
        ({"control": {"name": "steering", "layers": [0], "vector": [1.0], "preserve_norm": 1}}, "ttc.control.preserve_norm"),
        # a section given as one object, or as null, is not silently something else
        ({"decoding": {"name": "force_token", "token_id": 1}}, "ttc.decoding"),
        ({"search": None}, "ttc.search"),
        ({"control": None}, "ttc.control"),
        ({"decoding": None}, "ttc.decoding"),
        ({"beam": None}, "ttc.beam"),
        ({"decoding": [{"name": "ban_tokens", "token_ids": [3, -1]}]}, "ttc.decoding.0.token_ids"),
        # steering writes that could overflow the residual stream
        ({"control": {"name": "steering", "layers": [0], "vector": [1e308] * 4, "scale": 4.0}}, "ttc.control.vector"),
        ({"control": {"name": "steering", "layers": [0], "vector": [1.0] * 4, "scale": 1e30}}, "ttc.control.scale"),
        ({"control": {"name": "steering", "layers": [0], "vector": [0.0] * 4, "mode": "project"}}, "ttc.control.vector"),
        ({"control": {"name": "ttc_layer", "layers": [0], "horizon": 4, "scale": 1e30}}, "ttc.control.scale"),
    ],
)
def test_bad_params_name_the_field(pm, raw, field):
    with pytest.raises(TTCParamError) as exc:
        pm.parse_params(raw)
    assert exc.value.field == field, str(exc.value)
    assert str(exc.value).startswith(field)


@pytest.mark.parametrize("field, section", [
    ("ttc.search.temperature", {"search": {"strategy": "beam", "temperature": float("nan")}}),
    ("ttc.control.scale", {"control": {"name": "steering", "layers": [0], "vector": [1.0], "scale": float("inf")}}),
    ("ttc.beam.length_penalty", {"beam": {"width": 2, "length_penalty": float("nan")}}),
])
def test_non_finite_numbers_are_refused_as_such(pm, field, section):
    with pytest.raises(TTCParamError) as exc:
        pm.parse_params(section)
    assert exc.value.field == field and "finite" in exc.value.message, str(exc.value)


def test_deep_nesting_is_a_clear_error_not_a_recursion_error(pm):
    deep: dict = {}
    node = deep
    for _ in range(3000):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(TTCParamError) as exc:
        pm.parse_params({"search": {"strategy": "beam", "scorer_args": deep}})
    assert exc.value.field == "ttc" and "nested deeper" in exc.value.message


@pytest.mark.parametrize("section, field", [
    ({"decoding": [{"name": "force_token", "token_id": 2048}]}, "ttc.decoding.0.token_id"),
    ({"decoding": [{"name": "force_token", "token_id": 1_000_000_000, "max_forced": 2}]}, "ttc.decoding.0.token_id"),
    ({"decoding": [{"name": "ban_tokens", "token_ids": [5, 2047, 2048]}]}, "ttc.decoding.0.token_ids"),
])
def test_token_ids_are_checked_against_the_served_vocabulary(pm, section, field):
    from ttc_plugins.types import EngineFacts

    facts = EngineFacts(vocab_size=2048, hidden_size=4, num_layers=2)
    with pytest.raises(TTCParamError) as exc:
        pm.parse_params(section, facts)
    assert exc.value.field == field and "vocabulary" in exc.value.message, str(exc.value)
    assert pm.parse_params(section) is not None  # without facts (worker re-parse) nothing is checked
    ok = {"decoding": [{"name": "force_token", "token_id": 2047}, {"name": "ban_tokens", "token_ids": [0, 2047]}]}
    assert pm.parse_params(ok, facts) is not None


def test_nan_vector_rejected(pm):
    with pytest.raises(TTCParamError, match="ttc.control.vector"):
        pm.parse_params({"control": {"name": "steering", "layers": [0], "vector": [1.0, float("nan")]}})


def test_beam_round_trips_with_its_defaults(pm):
    params = pm.parse_params({"beam": {"width": 3, "early_stopping": "never"}})
    assert params.to_json() == {"beam": {"width": 3, "length_penalty": 1.0, "early_stopping": "never"}}
    assert pm.parse_params(params.to_json()) == params
