"""Readable PyTorch reference for ``residual_control`` (math in float32, result cast back).

For every row i of the flattened token batch with slot = token_slot[i] in [0, S):

    v = vectors[slot], c = scales[slot]
    mode 0 (additive):    h <- h + c * v
    mode 1 (projection):  v^ = v / |v|;  h <- h - (h . v^) v^ + c * v^   (h's component along v^ becomes c)
    preserve_norm[slot]:  h <- h * |h_before| / |h|                       (GrAInS-style norm preservation)

Rows with slot = -1 (or any slot outside [0, S), or an unknown mode) are left bit-for-bit
untouched. Degenerate cases: projection with |v| = 0 leaves the row as it was; norm
preservation is skipped when the updated row has norm 0.
"""

from __future__ import annotations

import torch

MODE_ADDITIVE = 0
MODE_PROJECTION = 1


def residual_control_reference(
    hidden: torch.Tensor,
    token_slot: torch.Tensor,
    vectors: torch.Tensor,
    scales: torch.Tensor,
    modes: torch.Tensor,
    preserve_norm: torch.Tensor,
) -> torch.Tensor:
    """Apply the controls to ``hidden [N, Hd]`` in place and return it."""
    S = vectors.shape[0]
    if hidden.shape[0] == 0 or S == 0:
        return hidden
    slot = token_slot.long()
    valid = (slot >= 0) & (slot < S)
    idx = slot.clamp(0, S - 1)

    h = hidden.float()
    v = vectors[idx].float()  # [N, Hd]
    c = scales[idx].float()[:, None]  # [N, 1]
    mode = modes[idx].long()
    keep_norm = preserve_norm[idx][:, None]

    additive = h + c * v
    v_norm = v.norm(dim=-1, keepdim=True)
    v_hat = torch.where(v_norm > 0, v / v_norm, torch.zeros_like(v))
    along = (h * v_hat).sum(-1, keepdim=True)  # h . v^
    projection = h - along * v_hat + c * v_hat

    new = torch.where((mode == MODE_PROJECTION)[:, None], projection, additive)
    h_norm = h.norm(dim=-1, keepdim=True)
    new_norm = new.norm(dim=-1, keepdim=True)
    rescale = torch.where(new_norm > 0, h_norm / new_norm, torch.ones_like(new_norm))
    new = torch.where(keep_norm, new * rescale, new)

    apply = valid & ((mode == MODE_ADDITIVE) | (mode == MODE_PROJECTION))
    hidden.copy_(torch.where(apply[:, None], new.to(hidden.dtype), hidden))
    return hidden
