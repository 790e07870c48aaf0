"""Default plugin: small decoders that are useful on their own and in tests.

- ``force_token``: every sampled token is ``token_id`` (for ``max_forced`` tokens, then free);
- ``ban_tokens``: the listed token ids are never sampled.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from .. import hookimpl


class ForceTokenParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token_id: int = Field(ge=0)
    max_forced: Optional[int] = Field(default=None, ge=1)


class ForceToken:
    name = "force_token"
    Params = ForceTokenParams

    @classmethod
    def apply(cls, logits, rows, args) -> None:
        vocab = logits.shape[-1]
        for row, p in zip(rows, args):
            if p.max_forced is not None and len(row.output_token_ids) >= p.max_forced:
                continue
            if p.token_id >= vocab:
                raise ValueError(f"force_token.token_id {p.token_id} is outside the vocabulary ({vocab})")
            keep = logits[row.index, p.token_id].clone()
            logits[row.index].fill_(float("-inf"))
            logits[row.index, p.token_id] = keep if keep.isfinite() else 0.0


class BanTokensParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token_ids: list[int] = Field(min_length=1, max_length=4096)


class BanTokens:
    name = "ban_tokens"
    Params = BanTokensParams

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
