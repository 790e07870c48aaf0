"""Public entry point :func:`branch_scores`."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._checks import FLOAT_DTYPES, INT_DTYPES, check_tensor, use_triton
from .reference import branch_scores_reference

MAX_K = 256


class BranchScores(NamedTuple):
    """Search scores of one decoding step; all float outputs are float32."""

    topk_logprobs: torch.Tensor  # [R, k], sorted descending
    topk_ids: torch.Tensor  # [R, k] int64
    chosen_logprobs: torch.Tensor | None  # [R] (None when no `chosen` was given)
    logsumexp: torch.Tensor  # [R]


def branch_scores(
    logits: torch.Tensor,
    k: int,
    chosen: torch.Tensor | None = None,
    *,
    out: BranchScores | None = None,
) -> BranchScores:
    """Log-probabilities for token-level search without materialising a log-softmax copy.

    Args:
        logits: [R, V] float32/float16/bfloat16 (unit stride in dim 1; any row stride), V up
                to a few hundred thousand.
        k:      number of candidates per row, 1 <= k <= min(V, 256).
        chosen: optional [R] int32/int64 token ids; their log-probs are returned (an id outside
                [0, V) gives NaN, decided on the device).
        out:    optional preallocated BranchScores (contiguous; ``chosen_logprobs`` required iff
                ``chosen`` is given), written in place and returned.

    Returns ``BranchScores(topk_logprobs [R,k] f32 sorted descending, topk_ids [R,k] int64,
    chosen_logprobs [R] f32 | None, logsumexp [R] f32)``. Ties in the logits rank the smaller
    id first. One streaming pass over the logits (online logsumexp + running top-k), no host
    sync; Triton on CUDA (or under TRITON_INTERPRET=1), else the PyTorch reference.
    """
    check_tensor("logits", logits, ndim=2, dtypes=FLOAT_DTYPES)
    R, V = logits.shape
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be a Python int, got {type(k).__name__}")
    if not 1 <= k <= min(V, MAX_K):
        raise ValueError(f"k must be in [1, min(V, {MAX_K})] = [1, {min(V, MAX_K)}], got {k}")
    if V > 1 and logits.stride(1) != 1:
        raise ValueError("logits must have unit stride in its last dimension")
    dev = logits.device
    if chosen is not None:
        check_tensor("chosen", chosen, shape=(R,), dtypes=INT_DTYPES, device=dev)

    if out is None:
        out = BranchScores(
            torch.empty(R, k, dtype=torch.float32, device=dev),
            torch.empty(R, k, dtype=torch.int64, device=dev),
            torch.empty(R, dtype=torch.float32, device=dev) if chosen is not None else None,
            torch.empty(R, dtype=torch.float32, device=dev),
        )
    else:
        if not isinstance(out, tuple) or len(out) != 4:
            raise TypeError("out must be a BranchScores")
        check_tensor("out.topk_logprobs", out[0], shape=(R, k), dtypes=(torch.float32,), device=dev)
        check_tensor("out.topk_ids", out[1], shape=(R, k), dtypes=(torch.int64,), device=dev)
        if (chosen is None) != (out[2] is None):
            raise ValueError("out.chosen_logprobs must be given exactly when chosen is given")
        if chosen is not None:
            check_tensor("out.chosen_logprobs", out[2], shape=(R,), dtypes=(torch.float32,), device=dev)
        check_tensor("out.logsumexp", out[3], shape=(R,), dtypes=(torch.float32,), device=dev)
        if not all(t.is_contiguous() for t in out if t is not None):
            raise ValueError("out tensors must be contiguous")
        out = BranchScores(*out)

    if use_triton(logits):
        from .triton_fwd import branch_scores_triton

        branch_scores_triton(
            logits, k, None if chosen is None else chosen.contiguous(),
            out.topk_logprobs, out.topk_ids, out.chosen_logprobs, out.logsumexp,
        )
    else:
        vals, ids, ch, lse = branch_scores_reference(logits, k, chosen)
        out.topk_logprobs.copy_(vals)
        out.topk_ids.copy_(ids)
        if ch is not None:
            out.chosen_logprobs.copy_(ch)
        out.logsumexp.copy_(lse)
    return out
