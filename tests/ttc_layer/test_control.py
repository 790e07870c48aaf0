"""The ttc_layer control: validation, resolution against the server's adapters, planning."""

from __future__ import annotations

import pytest

from ttc_plugins.errors import TTCParamError
from ttc_plugins.types import ControlPlan, EngineFacts, RequestContext


def _ctx(pm, control, ttc_layers=()):
    return RequestContext("r", params=pm.parse_params({"control": control}),
                          facts=EngineFacts(hidden_size=8, num_layers=4, ttc_layers=tuple(ttc_layers)))


def test_resolve_and_plan(pm):
    spec = pm.hook.ttc_resolve_control(ctx=_ctx(pm, {"name": "ttc_layer", "layers": [2], "horizon": 16}, ttc_layers=[2]))
    assert spec.kind == "ttc_layer" and spec.args == {"horizon": 16, "scale": 1.0}
    plan = ControlPlan(specs=[spec], hidden_size=8, num_layers=4)
    pm.hook.ttc_prepare_controls(plan=plan)
    assert plan.horizons == {2: {0: (16, 1.0)}} and plan.vectors == {}


def test_layer_without_adapter_is_a_400(pm):
    with pytest.raises(TTCParamError) as exc:
        pm.hook.ttc_resolve_control(ctx=_ctx(pm, {"name": "ttc_layer", "layers": [1], "horizon": 4}, ttc_layers=[2]))
    assert exc.value.field == "ttc.control.layers" and "adapters at: 2" in exc.value.message


def test_an_engine_hosting_no_adapter_refuses_the_control(pm):
    """An engine started without ttc_layers: the control is a 400, never accepted and ignored."""
    with pytest.raises(TTCParamError) as exc:
        pm.hook.ttc_resolve_control(ctx=_ctx(pm, {"name": "ttc_layer", "layers": [1], "horizon": 4}))
    assert exc.value.field == "ttc.control.layers" and "hosts no TTC adapter" in exc.value.message


@pytest.mark.parametrize("horizon", [-1, 5000, "long"])
def test_bad_horizon(pm, horizon):
    with pytest.raises(TTCParamError) as exc:
        pm.parse_params({"control": {"name": "ttc_layer", "layers": [0], "horizon": horizon}})
    assert exc.value.field == "ttc.control.horizon"


def test_plan_rejects_negative_horizon():
    plan = ControlPlan(specs=[None], hidden_size=4, num_layers=2)
    with pytest.raises(ValueError, match="horizon must be >= 0"):
        plan.add_horizon(0, 0, -3)


@pytest.mark.parametrize(("horizon", "ok"), [(0, True), (4, True), (16, True), (3, False), (17, False)])
def test_a_horizon_outside_the_adapters_trained_range_is_a_400(pm, horizon, ok):
    control = {"name": "ttc_layer", "layers": [2], "horizon": horizon}
    ctx = RequestContext("r", params=pm.parse_params({"control": control}),
                         facts=EngineFacts(hidden_size=8, num_layers=4, ttc_layers=(2,), ttc_horizons={2: (4, 16)}))
    if ok:
        assert pm.hook.ttc_resolve_control(ctx=ctx).args["horizon"] == horizon
        return
    with pytest.raises(TTCParamError) as exc:
        pm.hook.ttc_resolve_control(ctx=ctx)
    assert exc.value.field == "ttc.control.horizon" and "(4..16)" in exc.value.message, exc.value.message
