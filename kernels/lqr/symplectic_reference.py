"""Readable float64 reference for the symplectic (multiply-only) form of the TTC-layer LQR solve.

The same problem as :mod:`.reference` (read its docstring), solved the way the TTC paper's
hardware-efficient solver does: the Riccati recursion inverts ``S_t = R + B_t' P_t B_t`` at
every step; this form carries ``P_t`` as a ratio ``P_t = Y2_t Y1_t^{-1}`` of two D x D matrices
and updates the pair with products only (``A_t`` is diagonal, so ``A_t^{-1}`` is elementwise)::

    (Y1, Y2) = (I, Qf)                                   P_T = Qf
    for t = T..2:
        Y1 <- A_t^{-1} (Y1 + G_t Y2),    G_t = B_t R^{-1} B_t'
        Y2 <- A_t Y2 + Q_{t-1} Y1        (with the new Y1)
        (Y1, Y2) <- (Y1 M, Y2 M): the stacked pair's columns re-orthonormalised (a QR)
    P_1 = Y2 Y1^{-1}                                     one D x D solve
    u_0 = -(R + B_1' P_1 B_1)^{-1} B_1' P_1 A_1 h0       one DU x DU solve, as the Riccati step

Why it is the Riccati recursion: by the push-through identity
``P - P B (R + B'P B)^{-1} B'P = P (I + G P)^{-1}``, so
``P_{t-1} = A' P (I + G P)^{-1} A + Q_{t-1}``; with ``P = Y2 Y1^{-1}``,
``P (I + G P)^{-1} = Y2 (Y1 + G Y2)^{-1}``, hence
``P_{t-1} = (A Y2 + Q_{t-1} Y1_new) Y1_new^{-1}`` with ``Y1_new = A^{-1} (Y1 + G Y2)``.

Why the re-orthonormalisation: right-multiplying the pair by any invertible M leaves its ratio
``P`` unchanged, and without it the sweep is a power iteration: the columns line up with the
fastest-growing mode and the ratio loses accuracy. The peer's solver only rescales by magnitude
(at 1e3); measured with this reference on a D = DU = 4, T = 16 problem, magnitude-only rescaling
drifts from the Riccati answer by a relative 1e-8 at ``r_inv`` x 100 and 0.38 at x 1000 (R near
singular), where the QR keeps it at 1e-14 (``tests/kernels/test_lqr_symplectic.py``). A kernel can
do the same with a Cholesky-QR (products and one small factorisation) every few steps.

What it reports: the same ``(u0, status)`` as the Riccati reference (shared :func:`.reference.settle`).
It only forms ``S`` at t = 1, so a non-positive-definite ``S`` is caught there; at earlier steps
``P`` stays PSD whenever ``Q`` and ``Qf`` are, which the layer builds them to be, and anything
that goes wrong in the sweep (a singular ``A_t`` or ``Y1``) surfaces as a non-finite ``u0``.
The Triton kernel of this sweep (``triton_symplectic.py``, ``lqr(..., solver="symplectic")``) is
checked against this file and the Riccati reference; its re-orthonormalisation is modified
Gram-Schmidt, multiply-only apart from one division per column.
"""

from __future__ import annotations

import torch

from .reference import bad_inputs, settle

Tensor = torch.Tensor


def lqr_symplectic_reference(h0: Tensor, a: Tensor, r_inv: Tensor, log_gamma_a: Tensor, log_gamma_b: Tensor,
                             log_gamma_q: Tensor, B: Tensor, Q: Tensor, Qf: Tensor, T: Tensor,
                             compute_dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Return ``(u0 [N,H,DU] in compute_dtype, status [N,H] int32)``; differentiable in every float
    input. Shapes and per-row horizons as :func:`.reference.lqr_reference` (rows with t > T_n keep
    ``(I, Qf)`` until their own horizon starts)."""
    h0, a, r_inv, lga, lgb, lgq, B, Q, Qf = (x.to(compute_dtype) for x in
                                            (h0, a, r_inv, log_gamma_a, log_gamma_b, log_gamma_q, B, Q, Qf))
    f, T = compute_dtype, T.to(torch.int64)
    N, H, D = h0.shape

    Y1 = torch.eye(D, dtype=f, device=h0.device).expand(N, H, D, D)
    Y2 = Qf
    t_max = int(T.max()) if N > 0 else 0
    for t in range(t_max, 1, -1):
        active = (T >= t)[:, None, None, None]
        A_t = 1.0 + a * torch.exp(t * lga)[..., None]  # [N,H,D], the diagonal of A_t
        B_t = B[:, None] * torch.exp(t * lgb)[:, :, None, :]  # [N,H,D,DU]
        G = (B_t * r_inv[:, :, None, :]) @ B_t.transpose(-1, -2)  # B_t R^{-1} B_t'
        Y1_new = (Y1 + G @ Y2) / A_t[..., :, None]
        g = torch.exp((t - 1) * lgq)  # [N,H,D]
        Q_prev = Q[:, None] * g[..., :, None] * g[..., None, :]
        Y2_new = A_t[..., :, None] * Y2 + Q_prev @ Y1_new
        # re-orthonormalise the pair's columns: (Y1 M, Y2 M) has the same ratio for any invertible
        # M, and without this the columns line up with the fastest-growing mode (the sweep is a
        # power iteration) and the ratio loses accuracy when R is small
        basis = torch.linalg.qr(torch.cat([Y1_new, Y2_new], dim=-2)).Q
        Y1 = torch.where(active, basis[..., :D, :], Y1)
        Y2 = torch.where(active, basis[..., D:, :], Y2)

    # P_1 = Y2 Y1^{-1}, i.e. Y1' P' = Y2'
    # (solve_ex: a singular Y1 or S gives a non-finite u0 and a status, not an exception)
    P = torch.linalg.solve_ex(Y1.transpose(-1, -2), Y2.transpose(-1, -2))[0].transpose(-1, -2)
    P = 0.5 * (P + P.transpose(-1, -2))  # symmetric in exact arithmetic; the ratio's rounding is not
    A_1 = 1.0 + a * torch.exp(lga)[..., None]
    B_1 = B[:, None] * torch.exp(lgb)[:, :, None, :]
    S = torch.diag_embed(1.0 / r_inv) + B_1.transpose(-1, -2) @ P @ B_1
    not_pd = (torch.linalg.cholesky_ex(S.detach()).info > 0) & (T >= 1)[:, None]
    K = torch.linalg.solve_ex(S, B_1.transpose(-1, -2) @ (P * A_1[..., None, :]))[0]  # [N,H,DU,D]
    u0 = -(K @ h0[..., None]).squeeze(-1)
    return settle(u0, T, bad_inputs(r_inv, T), not_pd)
