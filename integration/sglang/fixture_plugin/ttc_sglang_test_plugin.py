"""Test-only ttc plugin, installed into the SGLang integration env by ``install.sh``.

It exercises ``ttc_accept_token`` end to end: a request that lists the decoder
``{"name": "reject_at", "position": k}`` gets its token at output position ``k`` rejected, so the
backend must finish it there with reason ``"rejected"``. The decoder itself leaves logits alone.
It loads through the ``ttc_plugins`` entry point in every process that builds a plugin manager
(the SGLang scheduler included), like any third-party plugin.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ttc_plugins import hookimpl


class RejectAtParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    position: int = Field(ge=0)


class RejectAt:
    name = "reject_at"
    Params = RejectAtParams

    @classmethod
    def apply(cls, logits, rows, args) -> None:
        return None


@hookimpl
def ttc_register_decoders(register):
    register(RejectAt)


@hookimpl
def ttc_accept_token(ctx, token_id, position):
    for named in ctx.params.decoding if ctx.params is not None else ():
        if named.name == "reject_at" and position == named.args.position:
            return False
    return None
