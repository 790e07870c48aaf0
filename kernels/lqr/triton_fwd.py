"""Triton forward kernel for the LQR first-control solve (see ``reference.py`` for the maths).

Formulation: one program per (token, head) holds the Riccati matrix P (D x D, padded to a power
of two) in registers for the whole horizon and never touches memory for it.

Because R is diagonal, the Riccati "measurement" update

    P~ = P - P B_t (R + B_t' P B_t)^{-1} B_t' P  =  (P^{-1} + sum_j b_j b_j' / r_j)^{-1}

can be applied one control column at a time (sequential processing, exact in exact arithmetic):

    for j in 0..DU-1:  b = B[:, j] * gamma_B[j]^t;  m = P b;  s = r_j + b'm;  P <- P - m m' / s

so no DU x DU factorisation or solve is needed: per step 2*D^2*DU multiply-adds plus the diagonal
propagation  P <- A_t P~ A_t + Q_{t-1}  (D^2, A_t diagonal). The pivots s are the LDL' pivots
of S_t = R + B_t' P B_t, so "S_t positive definite" is checked for free (s > 1e-6 * r_j).
The first control also needs no solve: K_1 = S^{-1} B' P A = R^{-1} B_1' P~_1 A_1, hence

    u_0 = -r_inv * (B_1' (P~_1 (A_1 h0))).

No host synchronisation: the horizon is read on the device per row, guards write a status code
and zero the row instead of raising, so the launch is CUDA-graph capturable.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .op import MAX_D, MAX_DU

from .._checks import interpreter_enabled, next_pow2
from .reference import LQR_BAD_INPUT, LQR_NONFINITE, LQR_NOT_POSITIVE_DEFINITE
from .triton_symplectic import _symplectic_sweep

# Compiled (GPU) kernels may only read globals that are tl.constexpr; the plain-int status codes
# of reference.py raise NameError there ("Cannot access global variable ..."), although the
# interpreter accepts them.
_BAD_INPUT = tl.constexpr(LQR_BAD_INPUT)
_NOT_POSITIVE_DEFINITE = tl.constexpr(LQR_NOT_POSITIVE_DEFINITE)
_NONFINITE = tl.constexpr(LQR_NONFINITE)


@triton.jit
def _measurement_update(P, tf, active, B_ptrs, rinv_ptrs, lgb_ptrs, offs_r, offs_c, mask_pr, mask_pc, mask_p,
                        pivot_bad, DU: tl.constexpr):
    """Apply the DU rank-1 updates of step t to P ([BP, BD, BD] fp32; padded entries stay 0).

    ``active`` ([BP, 1, 1]) is false for problems whose horizon has not started (t > T): their
    update is scaled by 0, which leaves P bit-for-bit unchanged.
    """
    for j in range(DU):
        rinv_j = tl.load(rinv_ptrs + j, mask=mask_p, other=1.0).to(tl.float32)  # [BP, 1, 1]
        g_j = tl.exp(tf * tl.load(lgb_ptrs + j, mask=mask_p, other=0.0).to(tl.float32))  # [BP, 1, 1]
        b_r = tl.load(B_ptrs + offs_r * DU + j, mask=mask_pr, other=0.0).to(tl.float32) * g_j  # [BP, BD, 1]
        b_c = tl.load(B_ptrs + offs_c * DU + j, mask=mask_pc, other=0.0).to(tl.float32) * g_j  # [BP, 1, BD]
        m_r = tl.sum(P * b_c, axis=2, keep_dims=True)  # P b as a column  [BP, BD, 1]
        m_c = tl.sum(P * b_r, axis=1, keep_dims=True)  # (P b)' as a row  [BP, 1, BD]  (P symmetric)
        r_j = 1.0 / tl.where(rinv_j > 0, rinv_j, 1.0)  # r_inv <= 0 rows are flagged LQR_BAD_INPUT
        s = r_j + tl.sum(b_r * m_r, axis=1, keep_dims=True)  # [BP, 1, 1], the LDL' pivot of S_t
        bad = (s <= 1e-6 * r_j) & active
        pivot_bad = pivot_bad | bad.to(tl.int32)
        inv_s = tl.where(active & ~bad, 1.0 / s, 0.0)
        inv_s = tl.where(bad, rinv_j, inv_s)  # guarded pivot s := r_j
        P = P - (m_r * inv_s) * m_c
    return P, pivot_bad


@triton.jit
def _problem_tiles(a_ptr, lga_ptr, lgq_ptr, Q_ptr, Qf_ptr, pp, nn, vec_base, offs_r, offs_c, mask_p, mask_pr, mask_pc,
                   mask_prc, D: tl.constexpr):
    """The per-problem inputs every sweep reads, in float32: ``log_gamma_a`` [BP, 1, 1], ``a`` and
    ``log_gamma_q`` as a column and a row, ``Q`` (per token) and ``P_T = Qf`` [BP, BD, BD]."""
    lga = tl.load(lga_ptr + pp, mask=mask_p, other=0.0).to(tl.float32)
    a_r = tl.load(a_ptr + vec_base + offs_r, mask=mask_pr, other=0.0).to(tl.float32)
    a_c = tl.load(a_ptr + vec_base + offs_c, mask=mask_pc, other=0.0).to(tl.float32)
    lgq_r = tl.load(lgq_ptr + vec_base + offs_r, mask=mask_pr, other=0.0).to(tl.float32)
    lgq_c = tl.load(lgq_ptr + vec_base + offs_c, mask=mask_pc, other=0.0).to(tl.float32)
    Qm = tl.load(Q_ptr + nn * D * D + offs_r * D + offs_c, mask=mask_prc, other=0.0).to(tl.float32)
    P = tl.load(Qf_ptr + pp * D * D + offs_r * D + offs_c, mask=mask_prc, other=0.0).to(tl.float32)
    return lga, a_r, a_c, lgq_r, lgq_c, Qm, P


@triton.jit
def _riccati_step(P, tf, active, pivot_bad, lga, a_r, a_c, lgq_r, lgq_c, Qm, B_ptrs, rinv_ptrs, lgb_ptrs, offs_r,
                  offs_c, mask_pr, mask_pc, mask_p, DU: tl.constexpr):
    """One step t > 1 of the recursion: the measurement update, then P <- A_t P~ A_t + Q_{t-1}
    (only where ``active``). The forward's sweep and the backward's recomputation both take it."""
    P, pivot_bad = _measurement_update(P, tf, active, B_ptrs, rinv_ptrs, lgb_ptrs, offs_r, offs_c, mask_pr, mask_pc,
                                       mask_p, pivot_bad, DU)
    ga = tl.exp(tf * lga)
    gq_r = tl.exp((tf - 1.0) * lgq_r)
    gq_c = tl.exp((tf - 1.0) * lgq_c)
    P = tl.where(active, P * ((1.0 + a_r * ga) * (1.0 + a_c * ga)) + Qm * (gq_r * gq_c), P)
    return P, pivot_bad


@triton.jit
def _finish(P, pivot_bad, Tp, T1, h0_ptr, rinv_ptr, lgb_ptr, B_ptrs, rinv_ptrs, lgb_ptrs, vec_base, a_c, lga,
            offs_p, offs_r, offs_c, mask_p1, mask_p, mask_pr, mask_pc, u_ptr, status_ptr,
            DU: tl.constexpr, BDU: tl.constexpr):
    """From P_1 (symmetric, [BP, BD, BD]): the t = 1 measurement update, then
    u0 = -r_inv * gamma_B * (B' (P~_1 (A_1 h0))), the status codes, and the stores. Shared by the
    Riccati and the symplectic kernels (they differ only in how they reach P_1)."""
    P, pivot_bad = _measurement_update(
        P, 1.0, Tp >= 1, B_ptrs, rinv_ptrs, lgb_ptrs, offs_r, offs_c, mask_pr, mask_pc, mask_p, pivot_bad, DU
    )
    h0_c = tl.load(h0_ptr + vec_base + offs_c, mask=mask_pc, other=0.0).to(tl.float32)
    x_c = (1.0 + a_c * tl.exp(lga)) * h0_c  # [BP, 1, BD]
    y_r = tl.sum(P * x_c, axis=2, keep_dims=True)  # [BP, BD, 1]

    offs_u = tl.arange(0, BDU)
    mask_u3 = offs_u[None, None, :] < DU
    Bt = tl.load(B_ptrs + offs_r * DU + offs_u[None, None, :], mask=mask_pr & mask_u3, other=0.0).to(tl.float32)
    z = tl.sum(Bt * y_r, axis=1)  # B' y  [BP, BDU]

    ctl = offs_p[:, None] * DU + offs_u[None, :]  # [BP, BDU]
    mask_pu = mask_p1[:, None] & (offs_u[None, :] < DU)
    rinv_u = tl.load(rinv_ptr + ctl, mask=mask_pu, other=1.0).to(tl.float32)
    gb_u = tl.exp(tl.load(lgb_ptr + ctl, mask=mask_pu, other=0.0).to(tl.float32))
    u = -rinv_u * gb_u * z  # [BP, BDU]

    # device-side guards -> one status code per problem (precedence: bad input, not PD, non-finite)
    rinv_ok = ((rinv_u > 0.0) & (rinv_u < float("inf"))) | ~mask_pu
    bad_input = (tl.sum(tl.where(rinv_ok, 0, 1), axis=1) > 0) | (T1 < 0)  # [BP]
    u_ok = ((u == u) & (tl.abs(u) < float("inf"))) | ~mask_pu
    nonfinite = tl.sum(tl.where(u_ok, 0, 1), axis=1) > 0
    not_pd = tl.sum(tl.sum(pivot_bad, axis=2), axis=1) > 0
    status = tl.where(
        bad_input,
        _BAD_INPUT,
        tl.where(not_pd, _NOT_POSITIVE_DEFINITE, tl.where(nonfinite, _NONFINITE, 0)),
    )
    status = tl.where(T1 == 0, 0, status)  # [BP]
    keep = (status == 0) & (T1 > 0)
    u = tl.where(keep[:, None], u, 0.0)
    tl.store(u_ptr + ctl, u.to(u_ptr.dtype.element_ty), mask=mask_pu)
    tl.store(status_ptr + offs_p, status.to(tl.int32), mask=mask_p1)


@triton.jit
def _lqr_fwd_kernel(
    h0_ptr, a_ptr, rinv_ptr, lga_ptr, lgb_ptr, lgq_ptr, B_ptr, Q_ptr, Qf_ptr, T_ptr,
    u_ptr, status_ptr,
    NH, H, D: tl.constexpr, DU: tl.constexpr,
    BP: tl.constexpr, BD: tl.constexpr, BDU: tl.constexpr, SYMPLECTIC: tl.constexpr,
):
    # One program = BP consecutive (token, head) problems of the flattened N*H axis. On the GPU
    # BP divides H (or is 1), so a program never straddles tokens and all its problems share T;
    # under the interpreter BP is large and the per-problem `active` mask handles mixed T.
    offs_p = tl.program_id(0).to(tl.int64) * BP + tl.arange(0, BP)  # flat (token, head) index
    mask_p1 = offs_p < NH
    tok = offs_p // H
    T1 = tl.load(T_ptr + tok, mask=mask_p1, other=0).to(tl.int32)  # [BP]
    t_max = tl.max(T1, axis=0)

    offs = tl.arange(0, BD)
    pp = offs_p[:, None, None]  # [BP, 1, 1]
    nn = tok[:, None, None]
    Tp = T1[:, None, None]
    offs_r = offs[None, :, None]  # [1, BD, 1]
    offs_c = offs[None, None, :]  # [1, 1, BD]
    mask_p = mask_p1[:, None, None]
    mask_pr = mask_p & (offs_r < D)
    mask_pc = mask_p & (offs_c < D)
    mask_prc = mask_pr & (offs_c < D)

    vec_base = pp * D  # h0, a, log_gamma_q
    rinv_ptrs = rinv_ptr + pp * DU
    lgb_ptrs = lgb_ptr + pp * DU
    B_ptrs = B_ptr + nn * D * DU  # B and Q are per token, shared by its heads

    lga, a_r, a_c, lgq_r, lgq_c, Qm, P = _problem_tiles(a_ptr, lga_ptr, lgq_ptr, Q_ptr, Qf_ptr, pp, nn, vec_base,
                                                        offs_r, offs_c, mask_p, mask_pr, mask_pc, mask_prc, D)

    pivot_bad = tl.zeros((BP, 1, 1), dtype=tl.int32)  # some pivot s <= 1e-6 r: S_t not positive definite
    if SYMPLECTIC:
        P = _symplectic_sweep(P, t_max, Tp, lga, a_r, lgq_r, B_ptrs, Q_ptr + nn * D * D, rinv_ptrs, lgb_ptrs, lgq_ptr,
                              vec_base, offs_r, offs_c, mask_p, mask_pr, mask_prc, D, DU)
    else:
        # t = max(T) .. 2: measurement update, then P <- A_t P~ A_t + Q_{t-1} (only where t <= T).
        # (A while loop, not range(): Triton 3.6's interpreter cannot take range() of a loaded
        # scalar with numpy >= 2.4.)
        t = t_max
        while t > 1:
            tf = t.to(tl.float32)
            P, pivot_bad = _riccati_step(P, tf, Tp >= t, pivot_bad, lga, a_r, a_c, lgq_r, lgq_c, Qm, B_ptrs, rinv_ptrs,
                                         lgb_ptrs, offs_r, offs_c, mask_pr, mask_pc, mask_p, DU)
            t -= 1

    _finish(P, pivot_bad, Tp, T1, h0_ptr, rinv_ptr, lgb_ptr, B_ptrs, rinv_ptrs, lgb_ptrs, vec_base, a_c, lga,
            offs_p, offs_r, offs_c, mask_p1, mask_p, mask_pr, mask_pc, u_ptr, status_ptr, DU, BDU)


def launch_config(N: int, H: int, D: int, *, interpreter: bool | None = None) -> tuple[int, int, int]:
    """(BP, BD, num_warps). GPU: pack the heads of one token (BP a power of two dividing H) up
    to ~2048 P entries per program, so no program mixes horizons. Interpreter: pack up to 64
    problems (mixed horizons, masked) because its cost is per operation, not per element."""
    if interpreter is None:
        interpreter = interpreter_enabled()
    BD = max(next_pow2(D), 2)
    BP = 1
    if interpreter:
        while BP < min(next_pow2(N * H), 64) and 2 * BP * BD * BD <= 65536:
            BP *= 2
    else:
        while H % (2 * BP) == 0 and 2 * BP * BD * BD <= 2048:
            BP *= 2
    tile = BP * BD * BD
    num_warps = 1 if tile <= 256 else 2 if tile <= 1024 else 4 if tile <= 4096 else 8
    return BP, BD, num_warps


def lqr_fwd_triton(
    h0, a, r_inv, log_gamma_a, log_gamma_b, log_gamma_q, B, Q, Qf, T, u0_out, status_out, config=None,
    solver: str = "riccati",
) -> None:
    """Launch the forward kernel; writes ``u0_out [N,H,DU]`` and ``status_out [N,H] int32``.

    Inputs must already be validated (see ``op.py``). Non-contiguous inputs are copied.
    ``config`` overrides :func:`launch_config` (tests use it to run the GPU packing under the interpreter).
    ``solver="symplectic"`` runs the multiply-only sweep (:mod:`.triton_symplectic`) to P_1.
    """
    N, H, D = h0.shape
    DU = r_inv.shape[-1]
    if N * H == 0:
        return
    assert u0_out.is_contiguous() and status_out.is_contiguous()
    args = [t.contiguous() for t in (h0, a, r_inv, log_gamma_a, log_gamma_b, log_gamma_q, B, Q, Qf, T)]
    BP, BD, num_warps = config if config is not None else launch_config(N, H, D)
    BDU = max(next_pow2(DU), 2)
    _lqr_fwd_kernel[(triton.cdiv(N * H, BP),)](
        *args, u0_out, status_out, N * H, H, D, DU,
        BP=BP, BD=BD, BDU=BDU, SYMPLECTIC=solver == "symplectic", num_warps=num_warps,
    )
