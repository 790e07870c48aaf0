"""Default plugin: small decoders that are useful on their own and in tests.

- ``force_token``: every sampled token is ``token_id`` (for ``max_forced`` tokens, then free);
- ``ban_tokens``: the listed token ids are never sampled.

Token ids are checked against the served model's vocabulary in the frontend (``check``), so an
id past it is a 400 naming the field; ``apply`` runs inside the engine and never raises on a row.
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field, field_validator

from ttc_plugins.request_model import RequestModel

from .. import hookimpl
from ..errors import TTCParamError
from ..types import EngineFacts


def _check_ids(field: str, ids: list[int], facts: EngineFacts) -> None:
    vocab = facts.vocab_size
    if vocab is None:
        return
    bad = [t for t in ids if t >= vocab]
    if bad:
        raise TTCParamError(field, f"token id {bad[0]} is outside the model's vocabulary (0..{vocab - 1})")


class ForceTokenParams(RequestModel):
    token_id: int = Field(ge=0)
    max_forced: Optional[int] = Field(default=None, ge=1)


class ForceToken:
    name = "force_token"
    Params = ForceTokenParams

    @classmethod
    def check(cls, args: ForceTokenParams, facts: EngineFacts) -> None:
        _check_ids("token_id", [args.token_id], facts)

    @classmethod
    def apply(cls, logits, rows, args) -> None:
        vocab = logits.shape[-1]
        for row, p in zip(rows, args):
            if p.max_forced is not None and len(row.output_token_ids) >= p.max_forced:
                continue
            if p.token_id >= vocab:  # refused in the frontend (check); never kill the engine here
                continue
            keep = logits[row.index, p.token_id].clone()
            logits[row.index].fill_(float("-inf"))
            logits[row.index, p.token_id] = keep if keep.isfinite() else 0.0


class BanTokensParams(RequestModel):
    token_ids: list[int] = Field(min_length=1, max_length=4096)

    @field_validator("token_ids")
    @classmethod
    def _non_negative(cls, v: list[int]) -> list[int]:
        if any(t < 0 for t in v):
            raise ValueError("token ids must be >= 0")
        return v


class BanTokens:
    name = "ban_tokens"
    Params = BanTokensParams

    @classmethod
    def check(cls, args: BanTokensParams, facts: EngineFacts) -> None:
        _check_ids("token_ids", args.token_ids, facts)

    @classmethod
    def apply(cls, logits, rows, args) -> None:
        vocab = logits.shape[-1]
        for row, p in zip(rows, args):
            ids = [t for t in p.token_ids if 0 <= t < vocab]
            if ids:
                logits[row.index, ids] = float("-inf")


@hookimpl
def ttc_register_decoders(register):
    register(ForceToken)
    register(BanTokens)
