"""Triton kernels for ``branch_scores``: streaming logsumexp + top-k, no log-softmax copy.

Two launches, no host sync:
1. ``_partial_kernel`` on a (rows, splits) grid. Each program streams its slice of the vocabulary
   in chunks of BLOCK_V: an online (max, sum-exp) pair and a running top-K_PAD set. Values and
   ids travel together as one int64 key, ``(order-preserving int32 of the fp32 logit) << 32 |
   (2^32 - 1 - id)``, so ``tl.topk`` on keys ranks by logit and breaks ties by smaller id. A chunk
   whose best key cannot enter the running set is skipped (a device-side branch).
2. ``_merge_kernel``, one program per row: combines the splits' (max, sum-exp) into the row's
   logsumexp, takes the top-K_PAD of the splits' candidates, writes the first k as log-probs
   (logit - lse) with their ids, and the chosen tokens' log-probs.
Reads the logits once (plus one element per chosen token); writes O(rows * splits * K_PAD).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .op import MAX_K

from .._checks import interpreter_enabled, next_pow2

_KEY_MIN = tl.constexpr(-(2**63))
_LOW_MASK = tl.constexpr(2**32 - 1)
# The low word holds 2^32 - 1 - id, written ``id ^ _LOW_MASK`` (equal for 0 <= id < 2^32). Keep the
# tensor on the left of operators with these constants: under TRITON_INTERPRET=1 ``constexpr - tensor``
# runs ``tl.constexpr.__sub__`` and gives a constexpr wrapping the tensor; returned from a @jit helper
# it stays wrapped, and Triton >= 3.9's interpreter rejects it in tl.store ("cannot convert ... to tensor").


@triton.jit
def _pack(x, idx):
    """fp32 logits + int64 ids -> int64 keys ordered by (logit desc, id asc)."""
    bits = x.to(tl.int32, bitcast=True)
    ordered = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    return (ordered.to(tl.int64) << 32) | (idx ^ _LOW_MASK)


@triton.jit
def _unpack(key):
    hi = (key >> 32).to(tl.int32)
    bits = tl.where(hi >= 0, hi, hi ^ 0x7FFFFFFF)
    return bits.to(tl.float32, bitcast=True), (key & _LOW_MASK) ^ _LOW_MASK


@triton.jit
def _partial_kernel(
    logits_ptr, stride_row, V, ws_m_ptr, ws_l_ptr, ws_key_ptr, SPLITS,
    BLOCK_V: tl.constexpr, CHUNKS_PER_SPLIT: tl.constexpr, K_PAD: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    offs = tl.arange(0, BLOCK_V).to(tl.int64)
    base = logits_ptr + row * stride_row
    start = split.to(tl.int64) * (CHUNKS_PER_SPLIT * BLOCK_V)

    m = tl.full((), float("-inf"), tl.float32)
    l = tl.full((), 0.0, tl.float32)
    best = tl.full((K_PAD,), _KEY_MIN, tl.int64)
    for c in range(CHUNKS_PER_SPLIT):
        idx = start + c * BLOCK_V + offs
        mask = idx < V
        x = tl.load(base + idx, mask=mask, other=float("-inf")).to(tl.float32)
        # online logsumexp (guarded for all -inf so far: exp(-inf - -inf) would be NaN)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        l = l * tl.exp(m - m_safe) + tl.sum(tl.exp(x - m_safe), axis=0)
        m = m_new
        # running top-K
        keys = tl.where(mask, _pack(x, idx), _KEY_MIN)
        if tl.max(keys, axis=0) > tl.min(best, axis=0):
            cand = tl.topk(keys, K_PAD)
            both = tl.reshape(tl.join(best, cand), (2 * K_PAD,))
            best = tl.topk(both, K_PAD)

    ws = row * SPLITS + split
    tl.store(ws_m_ptr + ws, m)
    tl.store(ws_l_ptr + ws, l)
    tl.store(ws_key_ptr + ws * K_PAD + tl.arange(0, K_PAD), best)


@triton.jit
def _merge_kernel(
    logits_ptr, stride_row, V, chosen_ptr, ws_m_ptr, ws_l_ptr, ws_key_ptr, SPLITS, k,
    top_val_ptr, top_id_ptr, chosen_out_ptr, lse_ptr,
    SPLITS_PAD: tl.constexpr, K_PAD: tl.constexpr, HAS_CHOSEN: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs_s = tl.arange(0, SPLITS_PAD)
    mask_s = offs_s < SPLITS
    ms = tl.load(ws_m_ptr + row * SPLITS + offs_s, mask=mask_s, other=float("-inf"))
    ls = tl.load(ws_l_ptr + row * SPLITS + offs_s, mask=mask_s, other=0.0)
    M = tl.max(ms, axis=0)
    M_safe = tl.where(M == float("-inf"), 0.0, M)
    lse = M + tl.log(tl.sum(ls * tl.exp(ms - M_safe), axis=0))
    tl.store(lse_ptr + row, lse)

    offs_k = tl.arange(0, K_PAD)
    key_offs = (row * SPLITS + offs_s[:, None]) * K_PAD + offs_k[None, :]
    keys = tl.load(ws_key_ptr + key_offs, mask=mask_s[:, None], other=_KEY_MIN)
    top = tl.topk(tl.reshape(keys, (SPLITS_PAD * K_PAD,)), K_PAD)
    val, idx = _unpack(top)
    mask_k = offs_k < k
    tl.store(top_val_ptr + row * k + offs_k, val - lse, mask=mask_k)
    tl.store(top_id_ptr + row * k + offs_k, idx, mask=mask_k)

    if HAS_CHOSEN:
        c = tl.load(chosen_ptr + row).to(tl.int64)
        inside = (c >= 0) & (c < V)
        x = tl.load(logits_ptr + row * stride_row + tl.where(inside, c, 0), mask=inside, other=0.0).to(tl.float32)
        tl.store(chosen_out_ptr + row, tl.where(inside, x - lse, float("nan")))


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1  # interpreter: few programs (its cost is per program and per op)


def plan(R: int, V: int, k: int, device: torch.device, block_v: int | None = None) -> tuple[int, int, int, int]:
    """(BLOCK_V, CHUNKS_PER_SPLIT, SPLITS, K_PAD) for a [R, V] problem; shape-only, no sync."""
    K_PAD = max(next_pow2(k), 2)
    if block_v is None:
        block_v = 256 if interpreter_enabled() else 2048
    BLOCK_V = max(min(block_v, next_pow2(V)), 2 * K_PAD)
    n_chunks = triton.cdiv(V, BLOCK_V)
    # enough programs to fill the device, at most 64 splits and 8192 merge candidates per row
    want = max(1, triton.cdiv(4 * _num_sms(device), max(R, 1)))
    max_splits = max(1, min(64, 8192 // K_PAD))
    splits = max(1, min(want, n_chunks, max_splits))
    chunks_per_split = triton.cdiv(n_chunks, splits)
    splits = triton.cdiv(n_chunks, chunks_per_split)
    return BLOCK_V, chunks_per_split, splits, K_PAD


def branch_scores_triton(logits, k, chosen, top_val, top_id, chosen_out, lse, *, block_v: int | None = None) -> None:
    """Launch on validated inputs (logits: unit stride in dim 1); writes the four outputs."""
    R, V = logits.shape
    if R == 0:
        return
    BLOCK_V, cps, splits, K_PAD = plan(R, V, k, logits.device, block_v)
    dev = logits.device
    ws_m = torch.empty(R, splits, dtype=torch.float32, device=dev)
    ws_l = torch.empty(R, splits, dtype=torch.float32, device=dev)
    ws_key = torch.empty(R, splits, K_PAD, dtype=torch.int64, device=dev)
    num_warps = 4 if BLOCK_V <= 1024 else 8
    _partial_kernel[(R, splits)](
        logits, logits.stride(0), V, ws_m, ws_l, ws_key, splits,
        BLOCK_V=BLOCK_V, CHUNKS_PER_SPLIT=cps, K_PAD=K_PAD, num_warps=num_warps,
    )
    has_chosen = chosen is not None
    _merge_kernel[(R,)](
        logits, logits.stride(0), V, chosen if has_chosen else lse, ws_m, ws_l, ws_key, splits, k,
        top_val, top_id, chosen_out if has_chosen else lse, lse,
        SPLITS_PAD=max(next_pow2(splits), 2), K_PAD=K_PAD, HAS_CHOSEN=has_chosen, num_warps=4,
    )
