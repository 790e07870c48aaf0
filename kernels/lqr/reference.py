"""Readable float64 reference for the TTC-layer LQR first-control solve.

This is the backward Riccati recursion written out below (the problem, then the recursion); the
Triton kernel is checked against it, the fast
op falls back to it off-GPU, and the fast op's backward differentiates it.

Problem, per token n and head h, over t = 1..T_n (T_n = ``T[n]``)::

    x_t = A_t x_{t-1} + B_t u_t,          x_0 = h0
    A_t = I + diag(a) * gamma_A^t          (diagonal)
    B_t = B diag(gamma_B^t)                (gamma_B is a DU-vector of discounts)
    cost  sum_t  1/2 x_t' Q_t x_t + 1/2 u_t' R u_t,   R = diag(1 / r_inv)
    Q_t = diag(gamma_Q^t) Q diag(gamma_Q^t)   for t < T,   Q_T = Qf

    P_T = Qf;  for t = T..1:
        S_t = R + B_t' P_t B_t
        K_t = S_t^{-1} B_t' P_t A_t
        P_{t-1} = A_t' P_t A_t - A_t' P_t B_t K_t + Q_{t-1}
    u_0 = -K_1 h0              (T = 0: u_0 = 0)

The discounts come in as logs (gamma = exp(log_gamma), log_gamma <= 0 in the layer).
"""

from __future__ import annotations

import torch

# Status codes (shared with the Triton kernel), one per (token, head). A nonzero status means
# u0 = 0 for that (token, head): the adapter is switched off there instead of spreading NaN.
LQR_OK = 0
LQR_BAD_INPUT = 1  # r_inv <= 0 or not finite, or T < 0
LQR_NOT_POSITIVE_DEFINITE = 2  # some R + B_t' P_t B_t is not positive definite: no unique minimiser
LQR_NONFINITE = 3  # the solve produced inf/NaN


def lqr_reference(
    h0: torch.Tensor,
    a: torch.Tensor,
    r_inv: torch.Tensor,
    log_gamma_a: torch.Tensor,
    log_gamma_b: torch.Tensor,
    log_gamma_q: torch.Tensor,
    B: torch.Tensor,
    Q: torch.Tensor,
    Qf: torch.Tensor,
    T: torch.Tensor,
    compute_dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(u0 [N,H,DU] in compute_dtype, status [N,H] int32)``; differentiable in every float input.

    Shapes: h0, a, log_gamma_q [N,H,D]; r_inv, log_gamma_b [N,H,DU]; log_gamma_a [N,H];
    B [N,D,DU]; Q [N,D,D]; Qf [N,H,D,D]; T [N] integer. Vectorised over (N, H); the Python loop
    runs over t = max(T)..1 (``T.max()`` syncs with the device: this is a reference, not the
    serving path). Rows with t > T_n keep P = Qf until their own horizon starts.
    """
    f = compute_dtype
    h0, a, r_inv = h0.to(f), a.to(f), r_inv.to(f)
    lga, lgb, lgq = log_gamma_a.to(f), log_gamma_b.to(f), log_gamma_q.to(f)
    B, Q, Qf = B.to(f), Q.to(f), Qf.to(f)
    T = T.to(torch.int64)
    N, H, D = h0.shape
    DU = r_inv.shape[-1]

    bad_input = bad_inputs(r_inv, T)  # [N,H]
    R = torch.diag_embed(1.0 / r_inv)  # [N,H,DU,DU]
    not_pd = torch.zeros(N, H, dtype=torch.bool, device=h0.device)

    P = Qf.clone()  # [N,H,D,D]
    u0 = torch.zeros(N, H, DU, dtype=f, device=h0.device)
    t_max = int(T.max()) if N > 0 else 0
    for t in range(t_max, 0, -1):
        active = T >= t  # [N]
        A_t = 1.0 + a * torch.exp(t * lga)[..., None]  # [N,H,D], the diagonal of A_t
        B_t = B[:, None] * torch.exp(t * lgb)[:, :, None, :]  # [N,H,D,DU]
        PB = P @ B_t
        S = R + B_t.transpose(-1, -2) @ PB
        info = torch.linalg.cholesky_ex(S.detach()).info  # > 0: S not positive definite
        not_pd = not_pd | ((info > 0) & active[:, None])
        PA = P * A_t[..., None, :]  # P @ diag(A_t)
        K = torch.linalg.solve(S, B_t.transpose(-1, -2) @ PA)  # [N,H,DU,D]
        if t == 1:
            u0 = -(K @ h0[..., None]).squeeze(-1)
        else:
            g = torch.exp((t - 1) * lgq)  # [N,H,D]
            Q_prev = Q[:, None] * g[..., :, None] * g[..., None, :]
            P_new = A_t[..., :, None] * (PA - PB @ K) + Q_prev
            P = torch.where(active[:, None, None, None], P_new, P)

    return settle(u0, T, bad_input, not_pd)


def bad_inputs(r_inv: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """[N,H] rows whose input cannot pose the problem: r_inv not finite or <= 0, or T < 0."""
    return ~(torch.isfinite(r_inv) & (r_inv > 0)).all(-1) | (T < 0)[:, None]


def settle(u0: torch.Tensor, T: torch.Tensor, bad_input: torch.Tensor, not_pd: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u0, status)`` as every solver reports them: one status per (token, head), by
    precedence bad input, then not positive definite, then a non-finite result; u0 = 0 wherever
    the status is not OK and for T = 0 rows (plain zeros with status 0)."""
    f = u0.dtype
    nonfinite = ~torch.isfinite(u0).all(-1)
    zero = torch.zeros((), dtype=torch.int32, device=u0.device)
    status = torch.where(
        bad_input,
        zero + LQR_BAD_INPUT,
        torch.where(not_pd, zero + LQR_NOT_POSITIVE_DEFINITE, torch.where(nonfinite, zero + LQR_NONFINITE, zero)),
    )
    status = torch.where((T == 0)[:, None], zero, status)
    keep = (status == 0) & (T > 0)[:, None]
    u0 = torch.where(keep[..., None], u0, torch.zeros((), dtype=f, device=u0.device))
    return u0, status
