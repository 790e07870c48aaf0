"""Triton kernel for ``residual_control``: one program per token row, in place, one launch.

Per row the update is h' = f * (h + coef * v) with
    additive:   coef = scale
    projection: coef = (scale - h.v / |v|) / |v|      (sets h's component along v^ to scale)
    f = |h| / |h + coef v| if preserve_norm else 1.
Rows up to ``MAX_BLOCK`` wide stay in registers (one read, one write of the row). Wider rows take
three passes over the row (stats, new norm, write), all reading the original h, so no barrier is
needed. Rows without a control are masked out entirely (never written: bit-for-bit untouched).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._checks import next_pow2

MAX_BLOCK = 8192


@triton.jit
def _residual_control_kernel(
    h_ptr, slot_ptr, v_ptr, scale_ptr, mode_ptr, pn_ptr,
    stride_h, stride_v, Hd, S,
    BLOCK: tl.constexpr, NUM_CHUNKS: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_ptr + row).to(tl.int64)
    valid = (slot >= 0) & (slot < S)
    slot = tl.where(valid, slot, 0)
    mode = tl.load(mode_ptr + slot, mask=valid, other=-1)
    active = valid & ((mode == 0) | (mode == 1))
    scale = tl.load(scale_ptr + slot, mask=active, other=0.0).to(tl.float32)
    keep_norm = tl.load(pn_ptr + slot, mask=active, other=0) != 0

    h_row = h_ptr + row * stride_h
    v_row = v_ptr + slot * stride_v
    offs = tl.arange(0, BLOCK)
    # Row masks compare the offsets with a per-row element count (0 for rows left untouched)
    # instead of AND-ing a scalar flag into a block mask: the Triton interpreter broadcasts a
    # scalar comparison result as an integer array (it tags it with the operands' dtype), so
    # `block_mask & scalar_flag` is not bool there, and since Triton 3.9 its tl.load/tl.store
    # reject such masks ("mask has unsupported dtype").
    n_live = tl.where(active, Hd, 0)
    n_norm = tl.where(active & keep_norm, Hd, 0)

    if NUM_CHUNKS == 1:
        m = offs < n_live
        h = tl.load(h_row + offs, mask=m, other=0.0).to(tl.float32)
        v = tl.load(v_row + offs, mask=m, other=0.0).to(tl.float32)
        vv = tl.sum(v * v)
        hv = tl.sum(h * v)
        hh = tl.sum(h * h)
        v_norm = tl.sqrt(vv)
        safe_vn = tl.where(v_norm > 0, v_norm, 1.0)
        coef_proj = tl.where(v_norm > 0, (scale - hv / safe_vn) / safe_vn, 0.0)
        coef = tl.where(mode == 1, coef_proj, scale)
        new = h + coef * v
        nn = tl.sum(new * new)
        f = tl.where(keep_norm & (nn > 0), tl.sqrt(hh) / tl.sqrt(tl.where(nn > 0, nn, 1.0)), 1.0)
        tl.store(h_row + offs, (new * f).to(h_ptr.dtype.element_ty), mask=m)
    else:
        vv = tl.zeros((BLOCK,), tl.float32)
        hv = tl.zeros((BLOCK,), tl.float32)
        hh = tl.zeros((BLOCK,), tl.float32)
        for c in range(NUM_CHUNKS):  # pass 1: statistics
            o = c * BLOCK + offs
            m = o < n_live
            h = tl.load(h_row + o, mask=m, other=0.0).to(tl.float32)
            v = tl.load(v_row + o, mask=m, other=0.0).to(tl.float32)
            vv += v * v
            hv += h * v
            hh += h * h
        v_norm = tl.sqrt(tl.sum(vv))
        safe_vn = tl.where(v_norm > 0, v_norm, 1.0)
        coef_proj = tl.where(v_norm > 0, (scale - tl.sum(hv) / safe_vn) / safe_vn, 0.0)
        coef = tl.where(mode == 1, coef_proj, scale)
        nn_acc = tl.zeros((BLOCK,), tl.float32)
        for c in range(NUM_CHUNKS):  # pass 2: norm of the updated row
            o = c * BLOCK + offs
            m = o < n_norm
            h = tl.load(h_row + o, mask=m, other=0.0).to(tl.float32)
            v = tl.load(v_row + o, mask=m, other=0.0).to(tl.float32)
            new = h + coef * v
            nn_acc += new * new
        nn = tl.sum(nn_acc)
        f = tl.where(keep_norm & (nn > 0), tl.sqrt(tl.sum(hh)) / tl.sqrt(tl.where(nn > 0, nn, 1.0)), 1.0)
        for c in range(NUM_CHUNKS):  # pass 3: write
            o = c * BLOCK + offs
            m = o < n_live
            h = tl.load(h_row + o, mask=m, other=0.0).to(tl.float32)
            v = tl.load(v_row + o, mask=m, other=0.0).to(tl.float32)
            tl.store(h_row + o, ((h + coef * v) * f).to(h_ptr.dtype.element_ty), mask=m)


def residual_control_triton(hidden, token_slot, vectors, scales, modes, preserve_norm, *, block: int | None = None):
    """Launch on validated inputs (hidden: unit stride in its last dim). ``block`` is for tests."""
    N, Hd = hidden.shape
    S = vectors.shape[0]
    if N == 0 or Hd == 0 or S == 0:  # nothing to apply (every slot is out of range)
        return hidden
    vectors = vectors.contiguous()
    BLOCK = block if block is not None else min(max(next_pow2(Hd), 16), MAX_BLOCK)
    num_chunks = triton.cdiv(Hd, BLOCK)
    num_warps = 4 if BLOCK <= 1024 else 8 if BLOCK <= 4096 else 16
    _residual_control_kernel[(N,)](
        hidden, token_slot.contiguous(), vectors, scales.contiguous(), modes.contiguous(),
        preserve_norm.contiguous().view(torch.uint8),
        hidden.stride(0), vectors.stride(0), Hd, S,
        BLOCK=BLOCK, NUM_CHUNKS=num_chunks, num_warps=num_warps,
    )
    return hidden
