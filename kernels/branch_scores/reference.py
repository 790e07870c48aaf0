"""Readable PyTorch reference for ``branch_scores`` (materialises the full log-softmax; fine here).

For logits [R, V]: lse = logsumexp(row) in float32; top-k by logit (ties: smaller token id
first), reported as log-probabilities logit - lse; optional chosen-token log-probabilities.
"""

from __future__ import annotations

import torch


def branch_scores_reference(
    logits: torch.Tensor, k: int, chosen: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Return ``(topk_logprobs [R,k] f32, topk_ids [R,k] int64, chosen_logprobs [R] f32 | None, lse [R] f32)``."""
    x = logits.float()
    lse = torch.logsumexp(x, dim=-1)
    logp = x - lse[:, None]
    # rank by the logit itself (monotone in logp) with a stable sort, so ties keep id order
    order = torch.sort(x, dim=-1, descending=True, stable=True).indices[:, :k]
    top_logp = torch.gather(logp, 1, order)
    chosen_logp = None
    if chosen is not None:
        V = x.shape[1]
        c = chosen.long()
        inside = (c >= 0) & (c < V)
        picked = torch.gather(logp, 1, c.clamp(0, max(V - 1, 0))[:, None])[:, 0]
        chosen_logp = torch.where(inside, picked, torch.full_like(picked, float("nan")))
    return top_logp, order, chosen_logp, lse
