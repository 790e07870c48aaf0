"""Test-only third-party ttc plugin, installed into every engine's integration environment by nox
(``noxfile.install_test_plugin``). It loads through the ``ttc_plugins`` entry point in every
process that builds a plugin manager (API server, engine core, SGLang scheduler), like any
third-party plugin, and acts only on requests that name its components:

- decoder ``{"name": "reject_at", "position": k}``: ``ttc_accept_token`` rejects the token at
  output position ``k`` (the backend must end the request there);
- decoder ``{"name": "fault", "hook": H, "after": k}``: the hook ``H`` raises once the request
  has ``k`` output tokens (``process_logits``: inside ``ttc_process_logits``; ``accept_token``:
  inside ``ttc_accept_token``; ``kv_report``: inside ``ttc_kv_report`` in the frontend);
- control ``{"name": "fault", "mode": "raise" | "inf", "layers": [...]}``: its plan raises, or
  writes an infinite steering vector (a planner that bypasses the request validation);
- search strategy ``fault`` (best-of-N's sampling, then it raises) and scorer ``fault`` (raises
  when asked to score), for served searches.

The engine must fail exactly those requests with a clear error and keep serving the others.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ttc_plugins import hookimpl
from ttc_plugins.scoring.base import Scorer
from ttc_plugins.search.best_of_n import BestOfN
from ttc_plugins.types import ControlSpec

FAULT_MESSAGE = "fault injected by ttc_test_plugin"


class RejectAtParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    position: int = Field(ge=0)


class RejectAt:
    name = "reject_at"
    Params = RejectAtParams

    @classmethod
    def apply(cls, logits, rows, args) -> None:
        return None


class FaultParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hook: Literal["process_logits", "accept_token", "kv_report"]
    after: int = Field(0, ge=0)


class Fault:
    name = "fault"
    Params = FaultParams

    @classmethod
    def apply(cls, logits, rows, args) -> None:
        for row, p in zip(rows, args):
            if p.hook == "process_logits" and len(row.output_token_ids) >= p.after:
                raise RuntimeError(f"{FAULT_MESSAGE} (process_logits)")


class FaultControlParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["raise", "inf"]
    layers: list[int] = Field(default_factory=lambda: [0], min_length=1)


class FaultControl:
    name = "fault"
    Params = FaultControlParams

    @classmethod
    def resolve(cls, params: FaultControlParams, ctx) -> ControlSpec:
        return ControlSpec.build(cls.name, params.layers, {"mode": params.mode})

    @classmethod
    def plan(cls, spec, slot, plan) -> None:
        if spec.args["mode"] == "raise":
            raise RuntimeError(f"{FAULT_MESSAGE} (control plan)")
        for layer in spec.layers:
            plan.add_vector(layer, slot, [float("inf")] * plan.hidden_size, 1.0)


class FaultStrategy(BestOfN):
    name = "fault"

    def run(self, s):
        yield from super().run(s)  # the engine work happens; then the strategy fails
        raise RuntimeError(f"{FAULT_MESSAGE} (strategy)")


class FaultScorer(Scorer):
    name = "fault"
    kind = "outcome"

    def score(self, items):
        raise RuntimeError(f"{FAULT_MESSAGE} (scorer)")


def _named(ctx, name):
    return [d.args for d in (ctx.params.decoding if ctx is not None and ctx.params is not None else ()) if d.name == name]


@hookimpl
def ttc_register_decoders(register):
    register(RejectAt)
    register(Fault)


@hookimpl
def ttc_register_controls(register):
    register(FaultControl)


@hookimpl
def ttc_register_search_strategies(register):
    register(FaultStrategy)


@hookimpl
def ttc_register_scorers(register):
    register(FaultScorer)


@hookimpl
def ttc_accept_token(ctx, token_id, position):
    for args in _named(ctx, "fault"):
        if args.hook == "accept_token" and position >= args.after:
            raise RuntimeError(f"{FAULT_MESSAGE} (accept_token)")
    for args in _named(ctx, "reject_at"):
        if position == args.position:
            return False
    return None


@hookimpl
def ttc_kv_report(ctx, stats):
    if any(args.hook == "kv_report" for args in _named(ctx, "fault")):
        raise RuntimeError(f"{FAULT_MESSAGE} (kv_report)")
