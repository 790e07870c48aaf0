"""lqr: the symplectic (multiply-only) reference agrees with the float64 Riccati reference,
forward and gradients, on awkward shapes: T = 1, odd D, DU > D, long horizons, near-singular R,
mixed and zero horizons; bad rows get the same status."""

from __future__ import annotations

import pytest
import torch

from ttc_plugins.kernels import LQR_BAD_INPUT, LQR_NOT_POSITIVE_DEFINITE, LQR_OK
from ttc_plugins.kernels.lqr.reference import lqr_reference
from ttc_plugins.kernels.lqr.symplectic_reference import lqr_symplectic_reference

from test_lqr import FLOAT_NAMES, make_inputs  # the sibling module (pytest puts this folder on sys.path)


def rel_rms(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x - ref).norm() / ref.norm().clamp_min(1e-300))


# (N, H, D, DU, T per row, r_inv scale): 1 = layer-like; 1e4 makes R = diag(1 / r_inv) nearly singular
CASES = [
    (3, 2, 5, 3, [1, 1, 1], 1.0),
    (4, 2, 7, 5, [3, 0, 6, 1], 1.0),
    (2, 3, 3, 6, [9, 4], 1.0),  # DU > D: B'PB is singular, R carries S
    (2, 1, 5, 3, [128, 77], 1.0),
    (2, 2, 4, 4, [16, 5], 1e4),
    (1, 1, 1, 1, [40], 1.0),
]
IDS = [f"N{n}-H{h}-D{d}-DU{du}-T{max(t)}-R{r:g}" for n, h, d, du, t, r in CASES]


def _inputs(case, requires_grad=False):
    N, H, D, DU, T, r_scale = case
    floats, T = make_inputs(N, H, D, DU, T, dtype=torch.float64)
    floats["r_inv"] = floats["r_inv"] * r_scale
    if requires_grad:
        floats = {k: v.clone().requires_grad_(True) for k, v in floats.items()}
    return floats, T


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_riccati(case):
    floats, T = _inputs(case)
    u_ref, st_ref = lqr_reference(*(floats[k] for k in FLOAT_NAMES), T)
    u, st = lqr_symplectic_reference(*(floats[k] for k in FLOAT_NAMES), T)
    assert torch.equal(st, st_ref) and (st == LQR_OK).all()
    assert torch.equal(u[T == 0], torch.zeros_like(u[T == 0]))
    assert rel_rms(u, u_ref) < 1e-9


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_match_riccati(case):
    floats, T = _inputs(case, requires_grad=True)
    w = torch.randn(case[0], case[1], case[3], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    leaves = [floats[k] for k in FLOAT_NAMES]
    def grads(solve):  # an input no step uses (the Q discounts when every T is 1) gets zeros
        got = torch.autograd.grad((solve(*leaves, T)[0] * w).sum(), leaves, allow_unused=True)
        return [torch.zeros_like(x) if gx is None else gx for x, gx in zip(leaves, got)]

    for name, a, b in zip(FLOAT_NAMES, grads(lqr_symplectic_reference), grads(lqr_reference)):
        assert torch.isfinite(a).all(), name
        if name in ("Q", "Qf"):  # symmetric inputs: only a gradient's symmetric part is defined
            a, b = a + a.transpose(-1, -2), b + b.transpose(-1, -2)
        if b.norm() > 0:
            assert rel_rms(a, b) < 1e-8, name


def test_long_horizons_stay_finite_through_the_rescaling():
    """A slowly decaying, expanding A_t (1 + a gamma^t with gamma near 1) over 256 steps: the pair
    would grow without bound; re-orthonormalised each step it stays finite and the ratio exact."""
    floats, T = _inputs((2, 2, 6, 3, [256, 200], 1.0))
    floats["a"] = floats["a"].abs() * 1.8  # every A_t entry > 1
    floats["log_gamma_a"] = torch.full_like(floats["log_gamma_a"], -1e-3)
    u_ref, _ = lqr_reference(*(floats[k] for k in FLOAT_NAMES), T)
    u, st = lqr_symplectic_reference(*(floats[k] for k in FLOAT_NAMES), T)
    assert (st == LQR_OK).all() and torch.isfinite(u).all()
    assert rel_rms(u, u_ref) < 1e-8


def test_bad_rows_get_the_riccati_status_and_zero_control():
    floats, T = _inputs((3, 2, 4, 3, [5, 2, 3], 1.0))
    floats["r_inv"][1, 0, 2] = -1.0
    floats["r_inv"][2, 1, 0] = float("nan")
    u_ref, st_ref = lqr_reference(*(floats[k] for k in FLOAT_NAMES), T)
    u, st = lqr_symplectic_reference(*(floats[k] for k in FLOAT_NAMES), T)
    assert torch.equal(st, st_ref)
    assert st[1, 0] == LQR_BAD_INPUT and st[2, 1] == LQR_BAD_INPUT and st[0].eq(LQR_OK).all()
    assert torch.equal(u[1, 0], torch.zeros(3, dtype=u.dtype)) and torch.isfinite(u).all()
    assert rel_rms(u, u_ref) < 1e-9


# -- the Triton kernel of the sweep (lqr(..., solver="symplectic")), float32, vs float64 Riccati ----
# The Riccati kernel's float32 target (1e-5 relative RMS) on layer-like inputs; the near-singular R
# case (r_inv x 1e4) loses digits in float32 in either kernel, so it gets its own bound.
KERNEL_RATIO = {1.0: 1e-5, 1e4: 1e-3}


def _kernel(floats, T, device, config=None):
    from ttc_plugins.kernels.lqr.triton_fwd import lqr_fwd_triton

    f32 = [floats[k].to(torch.float32).to(device) for k in FLOAT_NAMES]
    N, H, DU = floats["r_inv"].shape
    u0 = torch.full((N, H, DU), float("nan"), device=device)
    status = torch.full((N, H), -7, dtype=torch.int32, device=device)
    lqr_fwd_triton(*f32, T.to(device), u0, status, config=config, solver="symplectic")
    return u0.cpu().double(), status.cpu()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_kernel_forward_matches_riccati(case, device):
    floats, T = _inputs(case)
    # the reference sees the float32-rounded inputs the kernel sees
    floats = {k: v.to(torch.float32).double() for k, v in floats.items()}
    u_ref, st_ref = lqr_reference(*(floats[k] for k in FLOAT_NAMES), T)
    u, st = _kernel(floats, T, device)
    assert torch.equal(st, st_ref)
    assert torch.equal(u[T == 0], torch.zeros_like(u[T == 0]))
    assert rel_rms(u, u_ref) < KERNEL_RATIO[case[-1]], rel_rms(u, u_ref)


@pytest.mark.parametrize("bp", [1, 2], ids=lambda b: f"BP{b}")
def test_kernel_gpu_packing_under_interpreter(bp, device):
    """The GPU launch (BP heads of one token per program): that exact configuration here too."""
    floats, T = _inputs((3, 4, 6, 3, [0, 2, 5], 1.0))
    floats = {k: v.to(torch.float32).double() for k, v in floats.items()}
    u_ref, st_ref = lqr_reference(*(floats[k] for k in FLOAT_NAMES), T)
    u, st = _kernel(floats, T, device, config=(bp, 8, 1))
    assert torch.equal(st, st_ref) and rel_rms(u, u_ref) < 1e-5


def test_kernel_long_expanding_horizon_stays_finite(device):
    """256 steps of an expanding A_t in float32: the sweep stays finite and within 3e-3 of the
    float64 answer (measured 1.4e-3), where the float32 Riccati kernel's pivots fail on half the
    problems (it reports them not positive definite and returns zeros)."""
    from ttc_plugins.kernels.lqr.triton_fwd import lqr_fwd_triton

    floats, T = _inputs((2, 2, 6, 3, [256, 200], 1.0))
    floats["a"] = floats["a"].abs() * 1.8
    floats["log_gamma_a"] = torch.full_like(floats["log_gamma_a"], -1e-3)
    floats = {k: v.to(torch.float32).double() for k, v in floats.items()}
    u_ref, _ = lqr_reference(*(floats[k] for k in FLOAT_NAMES), T)
    u, st = _kernel(floats, T, device)
    assert (st == LQR_OK).all() and torch.isfinite(u).all()
    assert rel_rms(u, u_ref) < 3e-3, rel_rms(u, u_ref)
    riccati_u0, riccati_status = torch.empty(2, 2, 3, device=device), torch.empty(2, 2, dtype=torch.int32, device=device)
    lqr_fwd_triton(*(floats[k].float().to(device) for k in FLOAT_NAMES), T.to(device), riccati_u0, riccati_status)
    assert (riccati_status.cpu() == LQR_NOT_POSITIVE_DEFINITE).any()


def test_kernel_bad_rows_get_the_riccati_status(device):
    floats, T = _inputs((3, 2, 4, 3, [5, 2, 3], 1.0))
    floats["r_inv"][1, 0, 2] = -1.0
    floats["r_inv"][2, 1, 0] = float("nan")
    u_ref, st_ref = lqr_reference(*(floats[k] for k in FLOAT_NAMES), T)
    u, st = _kernel(floats, T, device)
    assert torch.equal(st, st_ref) and torch.isfinite(u).all()
    assert torch.equal(u[1, 0], torch.zeros(3, dtype=u.dtype))


def test_op_solver_symplectic_forward_and_gradients(device):
    """``lqr(..., solver="symplectic")``: the kernel forward, gradients of the symplectic
    reference, both equal to the Riccati op's."""
    from ttc_plugins.kernels import lqr

    floats, T = make_inputs(3, 2, 5, 3, [4, 0, 2], device=device, seed=3)
    leaves = {k: v.clone().requires_grad_(True) for k, v in floats.items()}
    outs = {}
    for solver in ("riccati", "symplectic"):
        res = lqr(*(leaves[k] for k in FLOAT_NAMES), T, solver=solver)
        grads = torch.autograd.grad(res.u0.square().sum(), [leaves[k] for k in FLOAT_NAMES], allow_unused=True)
        outs[solver] = (res.u0.detach().cpu().double(), grads)
    assert rel_rms(outs["symplectic"][0], outs["riccati"][0]) < 1e-5
    for name, a, b in zip(FLOAT_NAMES, outs["symplectic"][1], outs["riccati"][1]):
        if b is not None and b.norm() > 0:
            a, b = a.cpu().double(), b.cpu().double()
            if name in ("Q", "Qf"):
                a, b = a + a.transpose(-1, -2), b + b.transpose(-1, -2)
            assert rel_rms(a, b) < 1e-4, name
    with pytest.raises(ValueError, match="solver must be one of"):
        lqr(*(floats[k] for k in FLOAT_NAMES), T, solver="newton")
