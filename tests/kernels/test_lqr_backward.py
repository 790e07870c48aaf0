"""lqr backward: the Triton kernel's gradients equal autograd through the float64 Riccati
reference on awkward shapes (T = 1, odd D, DU > D, long horizons, near-singular R, mixed and zero
horizons), under the GPU packing too; rows whose u0 is a constant 0 get zero gradients."""

from __future__ import annotations

import pytest
import torch

from ttc_plugins.kernels import LQR_BAD_INPUT, LQR_NOT_POSITIVE_DEFINITE, lqr
from ttc_plugins.kernels.lqr.reference import lqr_reference

from test_lqr import FLOAT_NAMES, make_inputs  # sibling modules (pytest puts this folder on sys.path)
from test_lqr_symplectic import CASES, IDS, rel_rms

# float32 kernel vs float64 reference. Most gradients land near 1e-6, but some lose digits in float32
# whatever computes them: autograd through the reference in float32 is 1.3e-5 off on r_inv in the
# D = DU = 1, T = 40 case (the kernel 3.5e-5) and 5e-4 on B with near-singular R (r_inv x 1e4, the
# forward's own bound there is 1e-3; the kernel 4.4e-3)
BWD_RATIO = {1.0: 1e-4, 1e4: 1e-2}


def _floats(case, device):
    N, H, D, DU, T, r_scale = case
    floats, T = make_inputs(N, H, D, DU, T, dtype=torch.float64)
    floats["r_inv"] = floats["r_inv"] * r_scale
    return {k: v.to(torch.float32).to(device) for k, v in floats.items()}, T.to(device)


def _reference_grads(floats, T, grad_u0):
    """Autograd through the float64 Riccati reference from the float32 inputs the kernel sees;
    Q and Qf as symmetric parts (the kernel's contract for symmetric inputs)."""
    leaves = [floats[k].detach().cpu().double().requires_grad_(True) for k in FLOAT_NAMES]
    u, status = lqr_reference(*leaves, T.cpu())
    got = torch.autograd.grad(u, leaves, grad_u0.cpu().double(), allow_unused=True)
    out = [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, got)]
    for i in (7, 8):
        out[i] = 0.5 * (out[i] + out[i].transpose(-1, -2))
    return out, status


def _kernel_grads(floats, T, grad_u0, config=None):
    from ttc_plugins.kernels.lqr.triton_bwd import lqr_bwd_triton
    from ttc_plugins.kernels.lqr.triton_fwd import lqr_fwd_triton

    N, H, DU = floats["r_inv"].shape
    u0 = torch.empty(N, H, DU, device=grad_u0.device)
    status = torch.empty(N, H, dtype=torch.int32, device=grad_u0.device)
    args = [floats[k] for k in FLOAT_NAMES]
    lqr_fwd_triton(*args, T, u0, status)
    return lqr_bwd_triton(*args, T, status, grad_u0, config=config), status


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_kernel_gradients_match_the_reference(case, device):
    floats, T = _floats(case, device)
    N, H, _, DU, _, r_scale = case
    grad_u0 = torch.randn(N, H, DU, generator=torch.Generator().manual_seed(1)).to(device)
    got, status = _kernel_grads(floats, T, grad_u0)
    want, status_ref = _reference_grads(floats, T, grad_u0)
    assert torch.equal(status.cpu(), status_ref)
    for name, g, w, x in zip(FLOAT_NAMES, got, want, floats.values()):
        assert g.shape == x.shape and g.dtype == x.dtype and torch.isfinite(g).all(), name
        if w.norm() > 0:
            assert rel_rms(g.cpu().double(), w) < BWD_RATIO[r_scale], (name, rel_rms(g.cpu().double(), w))
        else:  # an input no step reads (the state discounts when every T is 1)
            assert (g == 0).all(), name


@pytest.mark.parametrize("bp", [1, 2], ids=lambda b: f"BP{b}")
def test_kernel_gradients_under_the_gpu_packing(bp, device):
    """The GPU launch packs the heads of one token per program (BP | H): same gradients."""
    floats, T = _floats((3, 2, 5, 3, [4, 0, 2], 1.0), device)
    grad_u0 = torch.randn(3, 2, 3, generator=torch.Generator().manual_seed(2)).to(device)
    got, _ = _kernel_grads(floats, T, grad_u0, config=(bp, 8, 1))
    want, _ = _reference_grads(floats, T, grad_u0)
    for name, g, w in zip(FLOAT_NAMES, got, want):
        assert rel_rms(g.cpu().double(), w) < 1e-5, name


def test_rows_without_a_control_get_zero_gradients(device):
    """T = 0 rows, a bad r_inv and an indefinite problem: u0 is a constant 0 there, so every
    gradient of that row is 0 (and finite), and the token's shared B, Q only get the other heads'."""
    floats, T = _floats((3, 2, 4, 2, [2, 0, 3], 1.0), device)
    floats["r_inv"][0, 1, 0] = 0.0  # token 0, head 1: bad input
    floats["Qf"][2, 0] = -50.0 * torch.eye(4, device=device)  # token 2, head 0: not positive definite
    grad_u0 = torch.randn(3, 2, 2, generator=torch.Generator().manual_seed(3)).to(device)
    got, status = _kernel_grads(floats, T, grad_u0)
    assert status[0, 1] == LQR_BAD_INPUT and status[2, 0] == LQR_NOT_POSITIVE_DEFINITE
    for name, g in zip(FLOAT_NAMES, got):
        assert torch.isfinite(g).all(), name
        if name in ("B", "Q"):
            assert (g[1] == 0).all(), name  # token 1: T = 0
        else:
            for n, h in ((0, 1), (1, 0), (1, 1), (2, 0)):
                assert (g[n, h] == 0).all(), (name, n, h)
    want, _ = _reference_grads(floats, T, grad_u0)
    ok = [(0, 0), (2, 1)]  # the reference's gradients there are the only ones that are not 0
    for name, g, w in zip(FLOAT_NAMES, got, want):
        if name not in ("B", "Q"):
            g, w = torch.stack([g[n, h] for n, h in ok]), torch.stack([w[n, h] for n, h in ok])
        assert rel_rms(g.cpu().double(), w) < 1e-5, name


@pytest.mark.parametrize("solver", ["riccati", "symplectic"])
def test_op_backward_runs_the_kernel(solver, device, monkeypatch):
    """``lqr`` on the Triton path differentiates with the kernel (not the float64 recomputation)."""
    from ttc_plugins.kernels.lqr import triton_bwd

    calls = []
    real = triton_bwd.lqr_bwd_triton
    monkeypatch.setattr(triton_bwd, "lqr_bwd_triton", lambda *a, **k: calls.append(1) or real(*a, **k))
    floats, T = _floats((2, 2, 3, 2, [3, 1], 1.0), device)
    leaves = [floats[k].clone().requires_grad_(True) for k in FLOAT_NAMES]
    res = lqr(*leaves, T, solver=solver)
    grads = torch.autograd.grad(res.u0.sum(), leaves)
    assert calls == [1]
    want, _ = _reference_grads(floats, T, torch.ones_like(res.u0))
    for name, g, w in zip(FLOAT_NAMES, grads, want):
        assert rel_rms(g.cpu().double(), w) < 1e-5, name
