"""Default plugin: activation steering with additive or projection vectors.

Per request: the decoder layers to steer, a vector (inline list, or the name of a vector the
server was configured with), a scale and a mode:

- ``add``: h ← h + scale·v (ActAdd / CAA style);
- ``project``: h ← h − (h·v̂)v̂ + scale·v̂ — the component along v̂ is set to ``scale``
  (directional ablation when ``scale`` is 0);

with optional norm preservation (rescale each token's state to its norm before steering, as
GrAInS does). The update is applied to the residual stream after each listed layer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, Union

from pydantic import Field, field_validator, model_validator

from ttc_plugins.request_model import RequestModel

from .. import hookimpl
from ..errors import TTCParamError
from ..types import ControlPlan, ControlSpec, EngineFacts
from .vectors import VectorLibrary, check_vector

if TYPE_CHECKING:  # pragma: no cover
    from ..types import RequestContext

MODES = {"add": ControlPlan.MODE_ADD, "project": ControlPlan.MODE_PROJECT}
#: largest magnitude a steering write may have in any coordinate (|scale·v_i| in ``add`` mode, |scale|
#: in ``project`` mode). Real steering vectors are orders of magnitude below it; above it the write
#: can overflow a half-precision residual stream to infinity, and NaN/inf written into the KV cache
#: outlives the request (freed blocks are reused by other requests).
MAX_WRITE = 1e4


def check_write(vector: tuple[float, ...] | list[float], scale: float, mode: str) -> None:
    """Refuse a steering whose write into the residual stream could stop being finite; the error
    names the field inside the control's arguments (``vector`` or ``scale``)."""
    if mode == "project":
        if not any(vector):
            raise TTCParamError("vector", "is all zeros; project mode needs a direction")
        if abs(scale) > MAX_WRITE:
            raise TTCParamError("scale", f"{scale:g} is above {MAX_WRITE:g} in magnitude (project mode)")
        return
    peak = max(abs(x) for x in vector)
    if peak > MAX_WRITE or abs(scale) * peak > MAX_WRITE:
        field = "vector" if peak > MAX_WRITE else "scale"
        raise TTCParamError(field, f"scale x vector reaches {abs(scale) * peak:g}; each value of scale x vector "
                                   f"must be within +-{MAX_WRITE:g} so that the steered states stay finite")


class SteeringParams(RequestModel):
    layers: list[int] = Field(min_length=1, max_length=512)
    vector: Union[list[float], str]
    scale: float = 1.0
    mode: Literal["add", "project"] = "add"
    preserve_norm: bool = False

    @field_validator("layers")
    @classmethod
    def _layers_non_negative(cls, v: list[int]) -> list[int]:
        if any(x < 0 for x in v):
            raise ValueError("layer indices must be >= 0")
        return v

    @field_validator("scale")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("scale must be a finite number")
        return v

    @field_validator("vector")
    @classmethod
    def _vector(cls, v: Union[list[float], str]) -> Union[list[float], str]:
        if isinstance(v, str):
            return v
        return list(check_vector(v))

    @model_validator(mode="after")
    def _finite_write(self) -> "SteeringParams":
        if not isinstance(self.vector, str):  # a named vector is checked when it is resolved
            check_write(self.vector, self.scale, self.mode)
        return self


class Steering:
    name = "steering"
    Params = SteeringParams

    @classmethod
    def resolve(cls, params: SteeringParams, ctx: "RequestContext") -> ControlSpec:
        facts = ctx.facts or EngineFacts()
        if isinstance(params.vector, str):
            library: VectorLibrary = facts.vectors or VectorLibrary()
            try:
                vector = library.get(params.vector)
            except (KeyError, ValueError) as exc:
                raise TTCParamError("ttc.control.vector", str(exc).strip("'\"")) from None
            try:  # an inline vector was checked with the params (SteeringParams._finite_write)
                check_write(vector, params.scale, params.mode)
            except TTCParamError as exc:
                raise TTCParamError(f"ttc.control.{exc.field}", exc.message) from None
        else:
            vector = tuple(params.vector)
        hidden = facts.hidden_size
        if hidden is not None and len(vector) != hidden:
            raise TTCParamError("ttc.control.vector", f"has {len(vector)} values; the model's hidden size is {hidden}")
        num_layers = facts.num_layers
        if num_layers is not None and max(params.layers) >= num_layers:
            raise TTCParamError("ttc.control.layers", f"the model has {num_layers} decoder layers (0..{num_layers - 1})")
        return ControlSpec.build(
            cls.name,
            params.layers,
            {"vector": list(vector), "scale": params.scale, "mode": params.mode, "preserve_norm": params.preserve_norm},
        )

    @classmethod
    def plan(cls, spec: ControlSpec, slot: int, plan: ControlPlan) -> None:
        args = spec.args
        for layer in spec.layers:
            plan.add_vector(
                layer, slot, args["vector"], args["scale"], mode=MODES[args["mode"]], preserve_norm=args["preserve_norm"]
            )


@hookimpl
def ttc_register_controls(register):
    register(Steering)
