"""Default plugin: the TTC-layer control — route a request's tokens through the server's TTC
adapters with a per-request planning horizon.

Adapters are configured engine-wide (one :class:`~ttc_plugins.ttc_layer.TTCAdapter` file per
decoder layer); a request opts in with ``{"name": "ttc_layer", "layers": [6], "horizon": 32}``.
Horizon 0 leaves the request untouched; requests in one batch may use different horizons. A
horizon outside the range the adapter was trained at (its file records it) is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from ttc_plugins.request_model import RequestModel

from .. import hookimpl
from ..errors import TTCParamError
from ..types import ControlPlan, ControlSpec
from .steering import MAX_WRITE

if TYPE_CHECKING:  # pragma: no cover
    from ..types import RequestContext

MAX_HORIZON = 1024


class TTCLayerParams(RequestModel):
    layers: list[int] = Field(min_length=1, max_length=512)
    horizon: int = Field(ge=0, le=MAX_HORIZON)
    # bounded like steering's writes: the states must stay finite
    scale: float = Field(1.0, ge=-MAX_WRITE, le=MAX_WRITE)


class TTCLayer:
    name = "ttc_layer"
    Params = TTCLayerParams

    @classmethod
    def resolve(cls, params: TTCLayerParams, ctx: "RequestContext") -> ControlSpec:
        # The engine's facts list the layers that host an adapter; a layer without one (on an engine
        # that hosts none: every layer) is refused, never accepted and ignored.
        if ctx.facts is not None:
            missing = sorted(set(params.layers) - set(ctx.facts.ttc_layers))
            if missing:
                where = ", ".join(map(str, sorted(ctx.facts.ttc_layers))) or "none (this server hosts no TTC adapter)"
                raise TTCParamError("ttc.control.layers", f"no TTC adapter at layer(s) {missing}; adapters at: {where}")
            for layer in params.layers:
                lo, hi = ctx.facts.ttc_horizons.get(layer, (0, MAX_HORIZON))
                if params.horizon and not lo <= params.horizon <= hi:
                    raise TTCParamError("ttc.control.horizon",
                                        f"{params.horizon} is outside the range the adapter at layer {layer} was "
                                        f"trained at ({lo}..{hi}); use 0 (off) or a horizon in {lo}..{hi}")
        return ControlSpec.build(cls.name, params.layers, {"horizon": params.horizon, "scale": params.scale})

    @classmethod
    def plan(cls, spec: ControlSpec, slot: int, plan: ControlPlan) -> None:
        args = spec.args
        for layer in spec.layers:
            plan.add_horizon(layer, slot, args["horizon"], args["scale"])


@hookimpl
def ttc_register_controls(register):
    register(TTCLayer)
