"""The symplectic (multiply-only) LQR sweep in Triton: the Riccati kernel (:mod:`.triton_fwd`)
with ``SYMPLECTIC=True`` runs :func:`_symplectic_sweep` instead of its own recursion. The maths
and the reasons are in ``symplectic_reference.py``, which it is checked against (with the
Riccati reference).

One program per (token, head) problem (packed as the Riccati kernel's, :func:`.triton_fwd.launch_config`)
holds the pair ``(Y1, Y2)`` (D x D each, padded to a power of two) in registers for the whole
horizon. Per step t = T..2, with products, sums and one division per column only:

    Y1 <- A_t^{-1} (Y1 + G_t Y2)     G_t Y2 = sum_j r_inv_j gamma_B,j^2t b_j (b_j' Y2): DU rank-1 updates
    Y2 <- A_t Y2 + Q_{t-1} Y1        D rank-1 updates (a column of Q_{t-1} times a row of Y1)
    (Y1, Y2) <- (Y1, Y2) M           modified Gram-Schmidt on the stacked columns (D steps)

Gram-Schmidt is the multiply-only re-orthonormalisation: any right factor M keeps the ratio
``P = Y2 Y1^{-1}``, and without one the columns collapse onto the fastest-growing mode. At the
end ``P_1 = Y2 Y1^{-1}`` comes from Gauss-Jordan elimination on Y1's columns with partial pivoting
(pivots chosen by masks, no row swaps in memory), is symmetrised, and the t = 1 step is the
Riccati kernel's (:func:`.triton_fwd._finish`: the pivots of ``S_1`` give the positive-definite
check, then ``u_0`` and the status codes).

No host synchronisation: horizons are read on the device, inactive problems (t > T_n) keep their
pair through masks, and failures become status codes (CUDA-graph capturable).
"""

from __future__ import annotations

import triton
import triton.language as tl



@triton.jit
def _column(X, offs_c, k):
    """Column k of the [BP, BD, BD] tile X, as [BP, BD, 1]."""
    return tl.sum(tl.where(offs_c == k, X, 0.0), axis=2, keep_dims=True)


@triton.jit
def _row(X, offs_r, k):
    """Row k of the [BP, BD, BD] tile X, as [BP, 1, BD]."""
    return tl.sum(tl.where(offs_r == k, X, 0.0), axis=1, keep_dims=True)


@triton.jit
def _orthonormalise(Y1, Y2, offs_c, D: tl.constexpr):
    """Modified Gram-Schmidt on the columns of the stacked [Y1; Y2] (padded columns stay 0)."""
    for j in range(D):
        c1 = _column(Y1, offs_c, j)
        c2 = _column(Y2, offs_c, j)
        norm2 = tl.sum(c1 * c1, axis=1, keep_dims=True) + tl.sum(c2 * c2, axis=1, keep_dims=True)  # [BP, 1, 1]
        # a zero column (a padding problem) stays zero
        inv = tl.where(norm2 > 0, 1.0 / tl.sqrt(tl.where(norm2 > 0, norm2, 1.0)), 0.0)
        q1 = c1 * inv
        q2 = c2 * inv
        coef = tl.sum(q1 * Y1, axis=1, keep_dims=True) + tl.sum(q2 * Y2, axis=1, keep_dims=True)  # [BP, 1, BD]
        coef = tl.where(offs_c > j, coef, 0.0)
        Y1 = tl.where(offs_c == j, q1, Y1 - q1 * coef)
        Y2 = tl.where(offs_c == j, q2, Y2 - q2 * coef)
    return Y1, Y2


@triton.jit
def _ratio(Y1, Y2, offs_r, offs_c, mask_p, D: tl.constexpr):
    """P = Y2 Y1^{-1}, symmetrised: Gauss-Jordan on Y1's columns (the same column operations on
    Y2) with partial pivoting; a singular Y1 gives non-finite entries (the status reports them)."""
    used = tl.zeros_like(_row(Y1, offs_r, 0)) > 1.0  # [BP, 1, BD] all false: columns already pivots
    Pi = tl.zeros_like(Y1)  # Pi[c, k] = 1 where column c was the pivot of row k
    for k in range(D):
        r = _row(Y1, offs_r, k)  # [BP, 1, BD]
        cand = tl.where(~used & (offs_c < D), tl.abs(r), -1.0)
        p = tl.argmax(cand, axis=2, keep_dims=True)  # [BP, 1, 1]
        is_p = offs_c == p  # [BP, 1, BD]
        piv = tl.sum(tl.where(is_p, r, 0.0), axis=2, keep_dims=True)  # [BP, 1, 1]
        piv = tl.where(mask_p, piv, 1.0)  # padding problems (past N*H) hold zeros: no 0/0 there
        col1 = tl.sum(tl.where(is_p, Y1, 0.0), axis=2, keep_dims=True) / piv  # [BP, BD, 1]
        col2 = tl.sum(tl.where(is_p, Y2, 0.0), axis=2, keep_dims=True) / piv
        others = tl.where(is_p, 0.0, r)
        Y1 = tl.where(is_p, col1, Y1 - col1 * others)
        Y2 = tl.where(is_p, col2, Y2 - col2 * others)
        used = used | is_p
        Pi = tl.where((offs_r == p) & (offs_c == k), 1.0, Pi)
    # now Y1 is the permutation Pi' (Y1[k, c] = 1 where c pivoted row k): P = Y2 Pi
    P = tl.zeros_like(Y2)
    for c in range(D):
        P += _column(Y2, offs_c, c) * _row(Pi, offs_r, c)
    return 0.5 * (P + tl.permute(P, (0, 2, 1)))


@triton.jit
def _symplectic_sweep(Qf, t_max, Tp, lga, a_r, lgq_r, B_ptrs, Q_ptrs, rinv_ptrs, lgb_ptrs, lgq_ptr, vec_base,
                      offs_r, offs_c, mask_p, mask_pr, mask_prc, D: tl.constexpr, DU: tl.constexpr):
    """P_1 from P_T = Qf by the multiply-only sweep (the module docstring); [BP, BD, BD] fp32."""
    Y1 = tl.where(mask_prc & (offs_r == offs_c), 1.0, 0.0)  # (Y1, Y2) = (I, Qf): P_T = Qf
    Y2 = Qf
    t = t_max  # a while loop: Triton 3.6's interpreter cannot take range() of a loaded scalar
    while t > 1:
        tf = t.to(tl.float32)
        active = Tp >= t
        # Y1 + G_t Y2, one control column at a time (R is diagonal)
        Z = Y1
        for j in range(DU):
            rinv_j = tl.load(rinv_ptrs + j, mask=mask_p, other=0.0).to(tl.float32)  # [BP, 1, 1]
            g_j = tl.exp(tf * tl.load(lgb_ptrs + j, mask=mask_p, other=0.0).to(tl.float32))
            b_r = tl.load(B_ptrs + offs_r * DU + j, mask=mask_pr, other=0.0).to(tl.float32) * g_j  # [BP, BD, 1]
            w = tl.sum(b_r * Y2, axis=1, keep_dims=True)  # b' Y2  [BP, 1, BD]
            Z += (b_r * rinv_j) * w
        alpha_r = 1.0 + a_r * tl.exp(tf * lga)  # the diagonal of A_t, as a column [BP, BD, 1]
        Y1n = tl.where(mask_pr, Z / alpha_r, 0.0)
        # A_t Y2 + Q_{t-1} Y1n, Q_{t-1} = diag(g^(t-1)) Q diag(g^(t-1)), one column of Q at a time
        gq_r = tl.exp((tf - 1.0) * lgq_r)
        Y2n = alpha_r * Y2
        for k in range(D):
            gq_k = tl.exp((tf - 1.0) * tl.load(lgq_ptr + vec_base + k, mask=mask_p, other=0.0).to(tl.float32))
            q_col = tl.load(Q_ptrs + offs_r * D + k, mask=mask_pr, other=0.0).to(tl.float32) * (gq_r * gq_k)
            Y2n += q_col * _row(Y1n, offs_r, k)
        Y1n, Y2n = _orthonormalise(Y1n, Y2n, offs_c, D)
        Y1 = tl.where(active, Y1n, Y1)
        Y2 = tl.where(active, Y2n, Y2)
        t -= 1
    return _ratio(Y1, Y2, offs_r, offs_c, mask_p, D)
