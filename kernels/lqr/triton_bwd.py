"""Triton backward of the LQR first-control solve: the gradient of ``u_0`` with respect to every
float input, for both solvers (they compute the same function; this is its reverse mode).

Per (token, head) problem, packed as the forward (:func:`.triton_fwd.launch_config`), in float32:

1. **Recompute** ``P_T .. P_1`` by the Riccati recursion of the forward kernel and keep each
   ``P_t`` in a scratch buffer (``N*H * (max T + 1) * D * D`` floats, freed after the call). The
   forward kept nothing: it stays a single pass with no extra memory for inference.
2. **Reverse sweep** from t = 1 to T, carrying the adjoint ``Pbar`` of ``P_{t-1}``. With
   ``G_t = B_t R^{-1} B_t'`` the measurement update is ``M_t = (P_t^{-1} + G_t)^{-1}`` (the forward's
   rank-1 updates), and the step is ``P_{t-1} = A_t M_t A_t + Q_{t-1}``. Its adjoints are closed
   forms in products only::

       Mbar = A_t Pbar A_t                 abar_t  = 2 rowsum(Pbar * M_t * alpha')
       Qbar += g g' * Pbar                 lgqbar = 2 (t-1) g * rowsum(Pbar * Q * g')
       Pbar_t = L' Mbar L,  L = I - M_t G_t          (dM = L dP L')
       Gbar = -M_t Mbar M_t                          (dM = -M dG M)
       rbar_j += b_j' Gbar b_j,   Bbar_j += 2 r_j gamma_B,j^t Gbar b_j,   lgbbar_j += t b_j' (2 r_j Gbar b_j)

   The first step (t = 1) starts it: ``u_0 = -R^{-1} B_1' M_1 (A_1 h0)`` gives ``h0bar``,
   ``Mbar_1`` and the t = 1 terms of the rest. At the row's own horizon ``Pbar`` is ``Qfbar``.

``Q`` and ``Qf`` are symmetric by contract, so their gradients are the symmetric parts (what any
symmetric parametrisation of them, e.g. ``Q = U U'``, needs). ``B`` and ``Q`` are per token: each
problem writes its head's share and the host sums them over heads (no atomics, deterministic).
Rows whose forward status is not OK, or whose horizon is 0, have ``u_0 = 0`` (a constant): their
gradients are 0. Checked against autograd through the float64 references
(``tests/kernels/test_lqr_backward.py``).

Unlike the forward, the call reads ``max(T)`` on the host (to size the scratch buffer): a
backward is not captured in a CUDA graph by the layer.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._checks import next_pow2
from .triton_fwd import _problem_tiles, _riccati_step, launch_config
from .triton_symplectic import _column, _row


@triton.jit
def _mm(X, Y, offs_r, offs_c, D: tl.constexpr):
    """X @ Y for [BP, BD, BD] tiles: D rank-1 updates (the padded rows and columns stay 0)."""
    Z = tl.zeros_like(X)
    for k in range(D):
        Z += _column(X, offs_c, k) * _row(Y, offs_r, k)
    return Z


@triton.jit
def _t(X):
    return tl.permute(X, (0, 2, 1))


@triton.jit
def _measurement_with_l(P, tf, active, B_ptrs, rinv_ptrs, lgb_ptrs, offs_r, offs_c, mask_pr, mask_pc, mask_p,
                        DU: tl.constexpr):
    """The forward's measurement update M = (P^{-1} + G_t)^{-1} (its DU rank-1 updates, pivots
    unguarded: rows with a bad pivot have a status and no gradient), and L = (I + P G_t)^{-1}, the
    factor of its derivative dM = L dP L', as the product of the updates' own factors
    ``I - m_j b_j' / s_j``: forming ``I - M G_t`` instead cancels badly when R is near singular."""
    L = tl.where(mask_pr & mask_pc & (offs_r == offs_c), 1.0, 0.0)
    for j in range(DU):
        rinv_j = tl.load(rinv_ptrs + j, mask=mask_p, other=1.0).to(tl.float32)
        g_j = tl.exp(tf * tl.load(lgb_ptrs + j, mask=mask_p, other=0.0).to(tl.float32))
        b_r = tl.load(B_ptrs + offs_r * DU + j, mask=mask_pr, other=0.0).to(tl.float32) * g_j
        b_c = tl.load(B_ptrs + offs_c * DU + j, mask=mask_pc, other=0.0).to(tl.float32) * g_j
        m_r = tl.sum(P * b_c, axis=2, keep_dims=True)
        m_c = tl.sum(P * b_r, axis=1, keep_dims=True)
        r_j = 1.0 / tl.where(rinv_j > 0, rinv_j, 1.0)
        s = r_j + tl.sum(b_r * m_r, axis=1, keep_dims=True)
        inv_s = tl.where(active & (s != 0), 1.0 / tl.where(s != 0, s, 1.0), 0.0)
        P = P - (m_r * inv_s) * m_c
        L = L - (m_r * inv_s) * tl.sum(b_r * L, axis=1, keep_dims=True)  # (I - m b'/s) L
    return P, L


@triton.jit
def _measurement_bwd(M, L, Mbar, tf, active, rbar, Bbar, lgbbar, B_ptrs, rinv_ptrs, lgb_ptrs, offs_r, offs_c,
                     offs_u, mask_pr, mask_pc, mask_p, D: tl.constexpr, DU: tl.constexpr):
    """Adjoint of M = (P^{-1} + G_t)^{-1} (``L`` from :func:`_measurement_with_l`): returns Pbar
    and the t-step terms of rbar, Bbar, lgbbar (added where ``active``)."""
    Pbar = _mm(_t(L), _mm(Mbar, L, offs_r, offs_c, D), offs_r, offs_c, D)
    Gbar = -_mm(M, _mm(Mbar, M, offs_r, offs_c, D), offs_r, offs_c, D)
    Gbar = 0.5 * (Gbar + _t(Gbar))
    for j in range(DU):
        rinv_j = tl.load(rinv_ptrs + j, mask=mask_p, other=0.0).to(tl.float32)
        g_j = tl.exp(tf * tl.load(lgb_ptrs + j, mask=mask_p, other=0.0).to(tl.float32))
        B_r = tl.load(B_ptrs + offs_r * DU + j, mask=mask_pr, other=0.0).to(tl.float32)
        b_r = B_r * g_j  # [BP, BD, 1]
        b_c = tl.load(B_ptrs + offs_c * DU + j, mask=mask_pc, other=0.0).to(tl.float32) * g_j
        Gb_r = tl.sum(Gbar * b_c, axis=2, keep_dims=True)  # Gbar b_j  [BP, BD, 1]
        on_j = (offs_u == j) & active  # [BP, 1, BDU]
        rbar += tl.where(on_j, tl.sum(b_r * Gb_r, axis=1, keep_dims=True), 0.0)
        bbar_r = 2.0 * rinv_j * Gb_r
        Bbar += tl.where(on_j, bbar_r * g_j, 0.0)
        lgbbar += tl.where(on_j, tf * tl.sum(b_r * bbar_r, axis=1, keep_dims=True), 0.0)
    return Pbar, rbar, Bbar, lgbbar


@triton.jit
def _lqr_bwd_kernel(
    h0_ptr, a_ptr, rinv_ptr, lga_ptr, lgb_ptr, lgq_ptr, B_ptr, Q_ptr, Qf_ptr, T_ptr, gu_ptr, scratch_ptr,
    dh0_ptr, da_ptr, drinv_ptr, dlga_ptr, dlgb_ptr, dlgq_ptr, dB_ptr, dQ_ptr, dQf_ptr,
    NH, H, TMAX, D: tl.constexpr, DU: tl.constexpr, BP: tl.constexpr, BD: tl.constexpr, BDU: tl.constexpr,
):
    offs_p = tl.program_id(0).to(tl.int64) * BP + tl.arange(0, BP)
    mask_p1 = offs_p < NH
    tok = offs_p // H
    T1 = tl.load(T_ptr + tok, mask=mask_p1, other=0).to(tl.int32)
    t_max = tl.max(T1, axis=0)

    offs = tl.arange(0, BD)
    pp = offs_p[:, None, None]
    nn = tok[:, None, None]
    Tp = T1[:, None, None]
    offs_r = offs[None, :, None]
    offs_c = offs[None, None, :]
    offs_u = tl.arange(0, BDU)[None, None, :]  # [1, 1, BDU]
    mask_p = mask_p1[:, None, None]
    mask_pr = mask_p & (offs_r < D)
    mask_pc = mask_p & (offs_c < D)
    mask_prc = mask_pr & (offs_c < D)
    mask_pu = mask_p & (offs_u < DU)

    vec_base = pp * D
    rinv_ptrs = rinv_ptr + pp * DU
    lgb_ptrs = lgb_ptr + pp * DU
    B_ptrs = B_ptr + nn * D * DU
    S_ptrs = scratch_ptr + pp * (TMAX + 1) * D * D + offs_r * D + offs_c  # slot t: + t * D * D

    lga, a_r, a_c, lgq_r, lgq_c, Qm, P = _problem_tiles(a_ptr, lga_ptr, lgq_ptr, Q_ptr, Qf_ptr, pp, nn, vec_base,
                                                        offs_r, offs_c, mask_p, mask_pr, mask_pc, mask_prc, D)
    unused = tl.zeros((BP, 1, 1), dtype=tl.int32)  # the forward's pivot flags: its status covers them

    # 1. recompute P_T .. P_2 into the scratch (slot t), ending with P_1 in registers
    t = t_max
    while t > 1:
        tl.store(S_ptrs + t * D * D, P, mask=mask_prc)
        P, unused = _riccati_step(P, t.to(tl.float32), Tp >= t, unused, lga, a_r, a_c, lgq_r, lgq_c, Qm, B_ptrs,
                                  rinv_ptrs, lgb_ptrs, offs_r, offs_c, mask_pr, mask_pc, mask_p, DU)
        t -= 1

    # 2. the first step: u0 = -r_inv * (B_1' y), y = M_1 x, x = A_1 h0
    one = Tp >= 1
    M, L = _measurement_with_l(P, 1.0, one, B_ptrs, rinv_ptrs, lgb_ptrs, offs_r, offs_c, mask_pr, mask_pc, mask_p,
                               DU)
    ga1 = tl.exp(lga)
    alpha1_r = 1.0 + a_r * ga1
    alpha1_c = 1.0 + a_c * ga1
    h0_r = tl.load(h0_ptr + vec_base + offs_r, mask=mask_pr, other=0.0).to(tl.float32)
    h0_c = tl.load(h0_ptr + vec_base + offs_c, mask=mask_pc, other=0.0).to(tl.float32)
    x_r = alpha1_r * h0_r
    x_c = alpha1_c * h0_c
    y_r = tl.sum(M * x_c, axis=2, keep_dims=True)  # [BP, BD, 1]

    rbar = tl.zeros_like(tl.where(mask_pu, 0.0, 0.0))  # [BP, 1, BDU]
    lgbbar = tl.zeros_like(rbar)
    Bbar = tl.zeros_like(tl.where(mask_pr & (offs_u < DU), 0.0, 0.0))  # [BP, BD, BDU]
    ybar_r = tl.zeros_like(y_r)
    ybar_c = tl.zeros_like(x_c)
    for j in range(DU):
        gu_j = tl.load(gu_ptr + pp * DU + j, mask=mask_p, other=0.0)  # [BP, 1, 1], 0 on rows without a gradient
        rinv_j = tl.load(rinv_ptrs + j, mask=mask_p, other=0.0).to(tl.float32)
        g_j = tl.exp(tl.load(lgb_ptrs + j, mask=mask_p, other=0.0).to(tl.float32))
        b_r = tl.load(B_ptrs + offs_r * DU + j, mask=mask_pr, other=0.0).to(tl.float32) * g_j
        b_c = tl.load(B_ptrs + offs_c * DU + j, mask=mask_pc, other=0.0).to(tl.float32) * g_j
        c_j = tl.sum(b_r * y_r, axis=1, keep_dims=True)  # (B_1' y)_j
        w_j = -rinv_j * gu_j
        on_j = offs_u == j
        rbar += tl.where(on_j, -gu_j * c_j, 0.0)
        Bbar += tl.where(on_j, y_r * w_j * g_j, 0.0)
        lgbbar += tl.where(on_j, tl.sum(b_r * y_r * w_j, axis=1, keep_dims=True), 0.0)
        ybar_r += b_r * w_j
        ybar_c += b_c * w_j
    xbar_r = tl.sum(M * ybar_c, axis=2, keep_dims=True)  # M' ybar (M symmetric)
    dh0 = alpha1_r * xbar_r
    alphabar = h0_r * xbar_r
    abar = alphabar * ga1
    lgabar = tl.sum(alphabar * a_r, axis=1, keep_dims=True) * ga1  # [BP, 1, 1]
    Mbar = 0.5 * (ybar_r * x_c + x_r * ybar_c)
    Pbar, rbar, Bbar, lgbbar = _measurement_bwd(M, L, Mbar, 1.0, one, rbar, Bbar, lgbbar, B_ptrs, rinv_ptrs, lgb_ptrs,
                                                offs_r, offs_c, offs_u, mask_pr, mask_pc, mask_p, D, DU)

    # 3. t = 2 .. T: Pbar is the adjoint of P_{t-1}; each step turns it into P_t's
    Qbar = tl.zeros_like(Pbar)
    lgqbar = tl.zeros_like(a_r)
    t = t_max * 0 + 2  # a tensor, like the forward's loop variable
    while t <= t_max:
        tf = t.to(tl.float32)
        active = Tp >= t
        Pt = tl.load(S_ptrs + t * D * D, mask=mask_prc, other=0.0)
        Mt, L = _measurement_with_l(Pt, tf, active, B_ptrs, rinv_ptrs, lgb_ptrs, offs_r, offs_c, mask_pr, mask_pc,
                                    mask_p, DU)
        ga = tl.exp(tf * lga)
        alpha_r = 1.0 + a_r * ga
        alpha_c = 1.0 + a_c * ga
        gq_r = tl.exp((tf - 1.0) * lgq_r)
        gq_c = tl.exp((tf - 1.0) * lgq_c)
        alphabar = 2.0 * tl.sum(Pbar * Mt * alpha_c, axis=2, keep_dims=True)  # [BP, BD, 1]
        abar += tl.where(active, alphabar * ga, 0.0)
        lgabar += tl.where(active, tf * ga * tl.sum(alphabar * a_r, axis=1, keep_dims=True), 0.0)
        Qbar += tl.where(active, Pbar * (gq_r * gq_c), 0.0)
        lgqbar += tl.where(active, 2.0 * (tf - 1.0) * gq_r * tl.sum(Pbar * Qm * gq_c, axis=2, keep_dims=True), 0.0)
        Mbar = Pbar * (alpha_r * alpha_c)
        Pbar_t, rbar, Bbar, lgbbar = _measurement_bwd(Mt, L, Mbar, tf, active, rbar, Bbar, lgbbar, B_ptrs, rinv_ptrs,
                                                      lgb_ptrs, offs_r, offs_c, offs_u, mask_pr, mask_pc, mask_p, D,
                                                      DU)
        Pbar = tl.where(active, Pbar_t, Pbar)
        t += 1

    Pbar = 0.5 * (Pbar + _t(Pbar))
    tl.store(dh0_ptr + vec_base + offs_r, dh0, mask=mask_pr)
    tl.store(da_ptr + vec_base + offs_r, abar, mask=mask_pr)
    tl.store(dlgq_ptr + vec_base + offs_r, lgqbar, mask=mask_pr)
    tl.store(dlga_ptr + pp, lgabar, mask=mask_p)
    tl.store(drinv_ptr + pp * DU + offs_u, rbar, mask=mask_pu)
    tl.store(dlgb_ptr + pp * DU + offs_u, lgbbar, mask=mask_pu)
    tl.store(dB_ptr + pp * D * DU + offs_r * DU + offs_u, Bbar, mask=mask_pr & (offs_u < DU))
    tl.store(dQ_ptr + pp * D * D + offs_r * D + offs_c, Qbar, mask=mask_prc)
    tl.store(dQf_ptr + pp * D * D + offs_r * D + offs_c, Pbar, mask=mask_prc)


def lqr_bwd_triton(h0, a, r_inv, log_gamma_a, log_gamma_b, log_gamma_q, B, Q, Qf, T, status, grad_u0,
                   config=None) -> tuple[torch.Tensor, ...]:
    """Gradients ``(dh0, da, dr_inv, dlog_gamma_a, dlog_gamma_b, dlog_gamma_q, dB, dQ, dQf)`` of
    ``(u0 * grad_u0).sum()``, each in its input's dtype (``dQ``, ``dQf``: symmetric parts).
    ``status`` is the forward's; ``config`` overrides :func:`.triton_fwd.launch_config`."""
    N, H, D = h0.shape
    DU = r_inv.shape[-1]
    dev, f32 = h0.device, torch.float32
    keep = (status == 0) & (T.to(torch.int64) > 0)[:, None]  # [N, H]: rows whose u0 is not a constant 0
    gu = torch.where(keep[..., None], grad_u0.to(f32), torch.zeros((), dtype=f32, device=dev)).contiguous()
    args = [t.contiguous() for t in (h0, a, r_inv, log_gamma_a, log_gamma_b, log_gamma_q, B, Q, Qf, T)]
    NH = N * H
    out = [torch.zeros(s, dtype=f32, device=dev) for s in
           ((NH, D), (NH, D), (NH, DU), (NH,), (NH, DU), (NH, D), (NH, D, DU), (NH, D, D), (NH, D, D))]
    if NH > 0:
        tmax = int(T.max())  # host sync: sizes the scratch buffer (the backward is not graph-captured)
        scratch = torch.empty(NH, tmax + 1, D, D, dtype=f32, device=dev)
        BP, BD, num_warps = config if config is not None else launch_config(N, H, D)
        BDU = max(next_pow2(DU), 2)
        _lqr_bwd_kernel[(triton.cdiv(NH, BP),)](*args, gu, scratch, *out, NH, H, tmax, D, DU,
                                                BP=BP, BD=BD, BDU=BDU, num_warps=num_warps)
    # rows without a gradient (status not OK, T = 0) may hold 0 * inf there: zero them
    flat_keep = keep.reshape(NH)
    zero = torch.zeros((), dtype=f32, device=dev)
    out = [torch.where(flat_keep.view(-1, *([1] * (g.dim() - 1))), g, zero) for g in out]
    dh0, da, drinv, dlga, dlgb, dlgq, dB, dQ, dQf = out
    grads = (dh0.view(N, H, D), da.view(N, H, D), drinv.view(N, H, DU), dlga.view(N, H), dlgb.view(N, H, DU),
             dlgq.view(N, H, D), dB.view(N, H, D, DU).sum(1), dQ.view(N, H, D, D).sum(1), dQf.view(N, H, D, D))
    dQ_sym = 0.5 * (grads[7] + grads[7].transpose(-1, -2))
    grads = (*grads[:7], dQ_sym, grads[8])
    return tuple(g.to(x.dtype) for g, x in zip(grads, (h0, a, r_inv, log_gamma_a, log_gamma_b, log_gamma_q, B, Q, Qf)))
