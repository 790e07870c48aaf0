"""Public entry point :func:`lqr`: validation, dispatch (Triton or reference), autograd."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._checks import FLOAT_DTYPES, INT_DTYPES, check_same_dtype, check_tensor, use_triton
from .reference import lqr_reference
from .symplectic_reference import lqr_symplectic_reference

MAX_D = 128  # P, Q live in registers: beyond this the kernel would spill heavily
MAX_DU = 128


class LQRResult(NamedTuple):
    """``u0 [N,H,DU]`` (dtype of h0) and ``status [N,H] int32`` (0 = ok, see ``LQR_*`` codes)."""

    u0: torch.Tensor
    status: torch.Tensor


#: solver name -> (float64 reference: the fallback and what the backward differentiates)
SOLVERS = {"riccati": lqr_reference, "symplectic": lqr_symplectic_reference}

_FLOAT_ARGS = ("h0", "a", "r_inv", "log_gamma_a", "log_gamma_b", "log_gamma_q", "B", "Q", "Qf")


def _validate(h0, a, r_inv, log_gamma_a, log_gamma_b, log_gamma_q, B, Q, Qf, T) -> torch.Tensor:
    """Metadata checks (no device sync); returns T as an integer tensor on h0's device."""
    check_tensor("h0", h0, ndim=3, dtypes=FLOAT_DTYPES)
    N, H, D = h0.shape
    check_tensor("r_inv", r_inv, ndim=3, dtypes=FLOAT_DTYPES)
    DU = r_inv.shape[-1]
    if D < 1 or D > MAX_D:
        raise ValueError(f"h0: state size D={D} must be in [1, {MAX_D}]")
    if DU < 1 or DU > MAX_DU:
        raise ValueError(f"r_inv: control size DU={DU} must be in [1, {MAX_DU}]")
    dev = h0.device
    spec = {
        "a": (N, H, D),
        "r_inv": (N, H, DU),
        "log_gamma_a": (N, H),
        "log_gamma_b": (N, H, DU),
        "log_gamma_q": (N, H, D),
        "B": (N, D, DU),
        "Q": (N, D, D),
        "Qf": (N, H, D, D),
    }
    args = dict(a=a, r_inv=r_inv, log_gamma_a=log_gamma_a, log_gamma_b=log_gamma_b,
                log_gamma_q=log_gamma_q, B=B, Q=Q, Qf=Qf)
    for name, shape in spec.items():
        check_tensor(name, args[name], shape=shape, dtypes=FLOAT_DTYPES, device=dev)
    check_same_dtype([("h0", h0)] + [(k, v) for k, v in args.items()])

    if isinstance(T, bool) or not isinstance(T, (int, torch.Tensor)):
        raise TypeError(f"T must be an integer tensor [N] or a Python int, got {type(T).__name__}")
    if isinstance(T, int):
        if T < 0:
            raise ValueError(f"T (horizon) must be >= 0, got {T}")
        return torch.full((N,), T, dtype=torch.int32, device=dev)
    check_tensor("T", T, shape=(N,), dtypes=INT_DTYPES, device=dev)
    if T.device.type == "cpu" and N > 0 and bool((T < 0).any()):
        # Host-side check only where it costs no device sync; on the GPU a negative horizon is
        # reported per row as LQR_BAD_INPUT with u0 = 0.
        raise ValueError("T (horizon) must be >= 0 for every row")
    return T


def _run_forward(h0, a, r_inv, lga, lgb, lgq, B, Q, Qf, T, u0, status, solver: str = "riccati") -> None:
    if use_triton(h0):
        from .triton_fwd import lqr_fwd_triton

        lqr_fwd_triton(h0, a, r_inv, lga, lgb, lgq, B, Q, Qf, T, u0, status, solver=solver)
    else:
        u_ref, st_ref = SOLVERS[solver](h0, a, r_inv, lga, lgb, lgq, B, Q, Qf, T)
        u0.copy_(u_ref)
        status.copy_(st_ref)


@torch.library.custom_op("ttc_kernels::lqr", mutates_args=())
def _lqr_op(
    h0: torch.Tensor, a: torch.Tensor, r_inv: torch.Tensor, log_gamma_a: torch.Tensor,
    log_gamma_b: torch.Tensor, log_gamma_q: torch.Tensor, B: torch.Tensor, Q: torch.Tensor,
    Qf: torch.Tensor, T: torch.Tensor, solver: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    N, H, _ = h0.shape
    u0 = torch.empty(N, H, r_inv.shape[-1], dtype=h0.dtype, device=h0.device)
    status = torch.empty(N, H, dtype=torch.int32, device=h0.device)
    _run_forward(h0, a, r_inv, log_gamma_a, log_gamma_b, log_gamma_q, B, Q, Qf, T, u0, status, solver)
    return u0, status


@_lqr_op.register_fake
def _(h0, a, r_inv, log_gamma_a, log_gamma_b, log_gamma_q, B, Q, Qf, T, solver):
    N, H, _ = h0.shape
    return (h0.new_empty(N, H, r_inv.shape[-1]), h0.new_empty(N, H, dtype=torch.int32))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:10], output[1])
    ctx.solver = inputs[10]


def _backward(ctx, grad_u0, grad_status):
    saved = ctx.saved_tensors
    floats, T, status = saved[:9], saved[9], saved[10]
    if use_triton(floats[0]):
        # The Triton backward (both solvers compute one function: this is its reverse mode, in
        # float32; Q and Qf get their gradients' symmetric parts).
        from .triton_bwd import lqr_bwd_triton

        return (*lqr_bwd_triton(*floats, T, status, grad_u0), None, None)
    # Off the Triton path: autograd through the solver's float64 reference, a differentiable
    # PyTorch recomputation (exact w.r.t. the reference; O(T) small batched ops).
    with torch.enable_grad():
        leaves = [x.detach().to(torch.float64).requires_grad_(True) for x in floats]
        u_ref, _ = SOLVERS[ctx.solver](*leaves, T)
        grads = torch.autograd.grad(u_ref, leaves, grad_u0.to(torch.float64), allow_unused=True)
    out = [None if g is None else g.to(x.dtype) for g, x in zip(grads, floats)]
    return (*out, None, None)


_lqr_op.register_autograd(_backward, setup_context=_setup_context)


def lqr(
    h0: torch.Tensor,
    a: torch.Tensor,
    r_inv: torch.Tensor,
    log_gamma_a: torch.Tensor,
    log_gamma_b: torch.Tensor,
    log_gamma_q: torch.Tensor,
    B: torch.Tensor,
    Q: torch.Tensor,
    Qf: torch.Tensor,
    T: torch.Tensor | int,
    *,
    out: LQRResult | tuple[torch.Tensor, torch.Tensor] | None = None,
    solver: str = "riccati",
) -> LQRResult:
    """Batched finite-horizon LQR first control of the TTC layer (one problem per token and head).

    Args (N tokens, H heads, D state size <= 128, DU control size <= 128; all float inputs
    share one dtype: float32, float16 or bfloat16; the solve always runs in float32):
        h0:          [N, H, D]  initial state x_0.
        a:           [N, H, D]  diagonal of the dynamics: A_t = I + diag(a) * exp(t * log_gamma_a).
        r_inv:       [N, H, DU] R^{-1} diagonal (R = diag(1 / r_inv)); must be > 0.
        log_gamma_a: [N, H]     log discount of the dynamics.
        log_gamma_b: [N, H, DU] log discounts of the controls: B_t = B diag(exp(t * log_gamma_b)).
        log_gamma_q: [N, H, D]  log discounts of the state cost:
                     Q_t = diag(g^t) Q diag(g^t), g = exp(log_gamma_q), for t < T; Q_T = Qf.
        B:           [N, D, DU] control matrix (shared by the heads of a token).
        Q:           [N, D, D]  symmetric PSD state cost (shared by the heads of a token).
        Qf:          [N, H, D, D] symmetric PSD terminal cost.
        T:           [N] int32/int64 horizon per token (rows may differ; 0 gives u0 = 0), or a
                     Python int for all rows. Negative values raise ValueError when T is on the
                     CPU; for a GPU tensor (checked without a sync) the row gets LQR_BAD_INPUT.
        out:         optional preallocated ``(u0, status)`` (contiguous, right shape/dtype/device);
                     written in place and returned. Inference only: no autograd with ``out``.
        solver:      ``"riccati"`` (the backward Riccati recursion, one rank-1 update per control
                     column) or ``"symplectic"`` (the TTC paper's multiply-only sweep over a pair of
                     D x D matrices, re-orthonormalised each step); the same answer.

    Returns:
        ``LQRResult(u0 [N,H,DU] in h0's dtype, status [N,H] int32)``. ``u0 = -K_1 h0`` from the
        backward Riccati recursion; ``status`` is 0 when fine, else ``LQR_BAD_INPUT`` (1),
        ``LQR_NOT_POSITIVE_DEFINITE`` (2) or ``LQR_NONFINITE`` (3), and that row's u0 is 0.

    The forward never synchronises with the host (CUDA-graph capturable) and runs the Triton
    kernel on CUDA tensors (or anywhere under ``TRITON_INTERPRET=1``), else the float64 PyTorch
    reference. Gradients flow to every float input: on the Triton path from the backward kernel
    (:mod:`.triton_bwd`, float32, the symmetric parts for ``Q`` and ``Qf``; it reads ``max(T)`` on
    the host to size its scratch), elsewhere by autograd through the solver's float64 reference.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {solver!r}")
    T = _validate(h0, a, r_inv, log_gamma_a, log_gamma_b, log_gamma_q, B, Q, Qf, T)
    floats = (h0, a, r_inv, log_gamma_a, log_gamma_b, log_gamma_q, B, Q, Qf)
    if out is None:
        u0, status = _lqr_op(*floats, T, solver)
        return LQRResult(u0, status)

    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError("out must be an LQRResult or a (u0, status) tuple")
    N, H, _ = h0.shape
    DU = r_inv.shape[-1]
    check_tensor("out.u0", out[0], shape=(N, H, DU), dtypes=(h0.dtype,), device=h0.device)
    check_tensor("out.status", out[1], shape=(N, H), dtypes=(torch.int32,), device=h0.device)
    if not (out[0].is_contiguous() and out[1].is_contiguous()):
        raise ValueError("out tensors must be contiguous")
    if torch.is_grad_enabled() and any(x.requires_grad for x in floats):
        raise ValueError("out= does not support autograd; call lqr without out (or under torch.no_grad())")
    _run_forward(*floats, T, out[0], out[1], solver)
    return LQRResult(out[0], out[1])
