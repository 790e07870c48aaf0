"""Default plugin: relays the hidden-state hooks to the control a request names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import hookimpl
from ..errors import TTCParamError

if TYPE_CHECKING:  # pragma: no cover
    from ..manager import TTCPluginManager
    from ..types import ControlPlan, ControlSpec, RequestContext


class ControlRelay:
    def __init__(self, manager: "TTCPluginManager"):
        self.controls = manager.controls

    @hookimpl(trylast=True)
    def ttc_resolve_control(self, ctx: "RequestContext") -> "ControlSpec | None":
        if ctx.params is None or ctx.params.control is None:
            return None
        named = ctx.params.control
        try:
            return self.controls.get(named.name).resolve(named.args, ctx)
        except TTCParamError:
            raise
        except (ValueError, KeyError) as exc:
            raise TTCParamError("ttc.control", str(exc).strip("'\"")) from exc

    @hookimpl
    def ttc_prepare_controls(self, plan: "ControlPlan") -> None:
        for slot, spec in enumerate(plan.specs):
            if spec.kind in self.controls:
                self.controls.get(spec.kind).plan(spec, slot, plan)
