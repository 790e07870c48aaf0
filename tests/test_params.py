"""Per-request ``ttc`` parameters: validation errors name the field."""

from __future__ import annotations

import pytest

from ttc_plugins.errors import TTCParamError


def test_absent_means_not_opted_in(pm):
    assert pm.parse_params(None) is None


def test_round_trip_through_json(pm):
    raw = {
        "control": {"name": "steering", "layers": [1, 0], "vector": [0.5, -1], "scale": 2},
        "decoding": {"name": "force_token", "token_id": 7},
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
    ],
)
def test_bad_params_name_the_field(pm, raw, field):
    with pytest.raises(TTCParamError) as exc:
        pm.parse_params(raw)
    assert exc.value.field == field, str(exc.value)
    assert str(exc.value).startswith(field)


def test_nan_vector_rejected(pm):
    with pytest.raises(TTCParamError, match="ttc.control.vector"):
        pm.parse_params({"control": {"name": "steering", "layers": [0], "vector": [1.0, float("nan")]}})


def test_beam_round_trips_with_its_defaults(pm):
    params = pm.parse_params({"beam": {"width": 3, "early_stopping": "never"}})
    assert params.to_json() == {"beam": {"width": 3, "length_penalty": 1.0, "early_stopping": "never"}}
    assert pm.parse_params(params.to_json()) == params
