"""lqr: Triton forward vs the float64 Riccati reference, gradients, status guards, validation."""

from __future__ import annotations

import importlib

import pytest
import torch

from ttc_plugins.kernels import LQR_BAD_INPUT, LQR_NOT_POSITIVE_DEFINITE, LQRResult, lqr
from ttc_plugins.kernels.lqr.reference import lqr_reference
from ttc_plugins.kernels.lqr.triton_fwd import lqr_fwd_triton

# fixed per-dtype tolerances (relative RMS error vs float64); fp32 is the 1e-5 target
FWD_RATIO = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
# gradients come from the float32 backward kernel (triton_bwd.py): the forward's fp32 target
GRAD_RATIO = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
FLOAT_NAMES = ("h0", "a", "r_inv", "log_gamma_a", "log_gamma_b", "log_gamma_q", "B", "Q", "Qf")


def make_inputs(N, H, D, DU, T, dtype=torch.float32, device="cpu", seed=0):
    """Layer-like inputs: normalised a, softplus r_inv, discounts in (0, 1), PSD Q and Qf."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    a = rnd(N, H, D)
    a = 0.5 * a / a.norm(dim=-1, keepdim=True)
    M, Mf = rnd(N, D, D), rnd(N, H, D, D)
    Q = M @ M.transpose(-1, -2) / D**0.5
    Qf = Mf @ Mf.transpose(-1, -2) / D**0.5
    floats = dict(
        h0=rnd(N, H, D),
        a=a,
        r_inv=torch.nn.functional.softplus(rnd(N, H, DU)).clamp_min(1e-6),
        log_gamma_a=-0.01 - 0.5 * torch.rand(N, H, generator=g, dtype=torch.float64),
        log_gamma_b=-0.01 - 0.5 * torch.rand(N, H, DU, generator=g, dtype=torch.float64),
        log_gamma_q=-0.01 - 0.5 * torch.rand(N, H, D, generator=g, dtype=torch.float64),
        B=rnd(N, D, DU) / D**0.5,
        Q=0.5 * (Q + Q.transpose(-1, -2)),
        Qf=0.5 * (Qf + Qf.transpose(-1, -2)),
    )
    floats = {k: v.to(dtype).to(device) for k, v in floats.items()}
    T = torch.as_tensor(T, dtype=torch.int64) if not isinstance(T, int) else torch.full((N,), T)
    return floats, T.to(device)


def run_reference(floats, T):
    u, st = lqr_reference(*(floats[k] for k in FLOAT_NAMES), T.cpu() if T.is_cuda else T)
    return u, st


def poisoned(N, H, DU, dtype, device):
    return LQRResult(
        torch.full((N, H, DU), float("nan"), dtype=dtype, device=device),
        torch.full((N, H), -7, dtype=torch.int32, device=device),
    )


# (N, H, D, DU, T per row): odd sizes, D not a power of two / not a multiple of 16, T = 0 rows,
# mixed horizons, D = DU = 1, and one long horizon
SHAPES = [
    (5, 3, 7, 5, [3, 0, 6, 1, 2]),
    (4, 2, 20, 6, [9, 0, 4, 7]),
    (3, 1, 16, 16, [4, 2, 0]),
    (2, 2, 3, 2, [40, 33]),
    (1, 5, 1, 1, [3]),
]


def _id(s):
    N, H, D, DU, T = s
    return f"N{N}-H{H}-D{D}-DU{DU}-T{max(T)}"


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
def test_forward_fp32(shape, device, assert_close):
    N, H, D, DU, T = shape
    floats, T = make_inputs(N, H, D, DU, T, device=device)
    u_ref, st_ref = run_reference(floats, T)
    out = poisoned(N, H, DU, torch.float32, device)
    res = lqr(*(floats[k] for k in FLOAT_NAMES), T, out=out)
    assert res.u0 is out.u0 and res.status is out.status
    assert torch.equal(res.status.cpu(), st_ref) and not (st_ref != 0).any()
    assert_close("u0", u_ref, res.u0.cpu(), FWD_RATIO[torch.float32])
    zero_rows = (T.cpu() == 0)
    assert (res.u0.cpu()[zero_rows] == 0).all(), "T = 0 rows must be exactly zero"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=lambda d: str(d).split(".")[-1])
def test_forward_half(dtype, device, assert_close):
    N, H, D, DU, T = 3, 2, 6, 3, [5, 0, 2]
    floats, T = make_inputs(N, H, D, DU, T, dtype=dtype, device=device, seed=1)
    u_ref, _ = run_reference(floats, T)  # reference sees the same rounded inputs
    out = poisoned(N, H, DU, dtype, device)
    res = lqr(*(floats[k] for k in FLOAT_NAMES), T, out=out)
    assert res.u0.dtype == dtype
    assert (res.status == 0).all()
    assert_close("u0", u_ref, res.u0.cpu(), FWD_RATIO[dtype])


@pytest.mark.parametrize("bp", [1, 2], ids=lambda b: f"BP{b}")
def test_gpu_packing_under_interpreter(bp, device, assert_close):
    """The GPU launch packs BP heads of one token per program (no mixed horizons): run that
    exact configuration here too, not only the interpreter's wide packing."""
    N, H, D, DU, T = 3, 4, 6, 3, [0, 2, 5]
    floats, T = make_inputs(N, H, D, DU, T, device=device, seed=2)
    u_ref, st_ref = run_reference(floats, T)
    out = poisoned(N, H, DU, torch.float32, device)
    lqr_fwd_triton(*(floats[k] for k in FLOAT_NAMES), T, out.u0, out.status, config=(bp, 8, 1))
    assert torch.equal(out.status.cpu(), st_ref)
    assert_close("u0", u_ref, out.u0.cpu(), FWD_RATIO[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=lambda d: str(d).split(".")[-1])
def test_gradients(dtype, device, assert_close):
    N, H, D, DU, T = 3, 2, 5, 3, [3, 0, 4]
    floats, T = make_inputs(N, H, D, DU, T, dtype=dtype, device=device, seed=3)
    leaves = {k: v.clone().requires_grad_(True) for k, v in floats.items()}
    res = lqr(*(leaves[k] for k in FLOAT_NAMES), T)
    grad_out = torch.randn(res.u0.shape, generator=torch.Generator().manual_seed(4)).to(dtype).to(device)
    grads = torch.autograd.grad(res.u0, [leaves[k] for k in FLOAT_NAMES], grad_out)

    ref_leaves = {k: v.detach().cpu().double().requires_grad_(True) for k, v in floats.items()}
    u_ref, _ = lqr_reference(*(ref_leaves[k] for k in FLOAT_NAMES), T.cpu())
    ref_grads = torch.autograd.grad(u_ref, [ref_leaves[k] for k in FLOAT_NAMES], grad_out.cpu().double())
    assert_close("u0", u_ref, res.u0.detach().cpu(), FWD_RATIO[dtype])
    for name, g, rg in zip(FLOAT_NAMES, grads, ref_grads):
        assert g.dtype == dtype, name
        if name in ("Q", "Qf"):  # symmetric inputs: the kernel returns the gradients' symmetric parts
            rg = 0.5 * (rg + rg.transpose(-1, -2))
        assert_close(f"d{name}", rg, g.cpu(), GRAD_RATIO[dtype])


def test_status_guards(device, assert_close):
    """Bad r_inv and an indefinite problem are flagged on the device and zeroed, like the reference."""
    N, H, D, DU = 3, 2, 4, 2
    floats, T = make_inputs(N, H, D, DU, [2, 3, 1], device=device, seed=5)
    floats["r_inv"][0, 1, 0] = 0.0  # token 0, head 1: bad input
    floats["Qf"][2, 0] = -50.0 * torch.eye(D, device=device)  # token 2, head 0: R + B'QfB indefinite
    u_ref, st_ref = run_reference(floats, T)
    out = poisoned(N, H, DU, torch.float32, device)
    res = lqr(*(floats[k] for k in FLOAT_NAMES), T, out=out)
    assert st_ref[0, 1] == LQR_BAD_INPUT and st_ref[2, 0] == LQR_NOT_POSITIVE_DEFINITE
    assert torch.equal(res.status.cpu(), st_ref)
    assert (res.u0[0, 1] == 0).all() and (res.u0[2, 0] == 0).all()
    assert_close("u0", u_ref, res.u0.cpu(), FWD_RATIO[torch.float32])


def test_negative_horizon_on_device_is_flagged(device):
    """Device-resident T is never read on the host: a negative row gets LQR_BAD_INPUT, u0 = 0."""
    floats, _ = make_inputs(2, 2, 3, 2, 1, device=device, seed=6)
    T = torch.tensor([-1, 2], device=device)
    out = poisoned(2, 2, 2, torch.float32, device)
    lqr_fwd_triton(*(floats[k] for k in FLOAT_NAMES), T, out.u0, out.status)
    assert (out.status[0] == LQR_BAD_INPUT).all() and (out.u0[0] == 0).all()
    assert (out.status[1] == 0).all() and torch.isfinite(out.u0[1]).all()


def test_falls_back_to_reference_without_interpreter(monkeypatch):
    """On CPU without TRITON_INTERPRET=1 the exported op is the reference (Triton never runs)."""
    op_mod = importlib.import_module("ttc_plugins.kernels.lqr.triton_fwd")

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(op_mod, "lqr_fwd_triton", lambda *a, **k: pytest.fail("Triton path taken"))
    floats, T = make_inputs(3, 2, 5, 2, [2, 0, 3], seed=7)
    res = lqr(*(floats[k] for k in FLOAT_NAMES), T)
    u_ref, st_ref = run_reference(floats, T)
    assert torch.equal(res.u0, u_ref.float()) and torch.equal(res.status, st_ref)


def _args(**over):
    floats, T = make_inputs(2, 2, 3, 2, 2, seed=8)
    floats.update({k: v for k, v in over.items() if k != "T"})
    return [floats[k] for k in FLOAT_NAMES] + [over.get("T", T)]


@pytest.mark.parametrize(
    "over, exc, word",
    [
        (dict(a=torch.zeros(2, 2, 4)), ValueError, "a"),
        (dict(B=torch.zeros(2, 3, 3)), ValueError, "B"),
        (dict(Qf=torch.zeros(2, 2, 3)), ValueError, "Qf"),
        (dict(log_gamma_a=torch.zeros(2, 3)), ValueError, "log_gamma_a"),
        (dict(Q=torch.zeros(2, 3, 3, dtype=torch.float64)), TypeError, "Q"),
        (dict(r_inv=torch.ones(2, 2, 2, dtype=torch.bfloat16)), TypeError, "r_inv"),
        (dict(h0=torch.zeros(2, 2, 3, dtype=torch.int32)), TypeError, "h0"),
        (dict(B=torch.zeros(2, 3, 2, device="meta")), ValueError, "B"),
        (dict(T=torch.tensor([1, -1])), ValueError, "T"),
        (dict(T=-2), ValueError, "T"),
        (dict(T=torch.tensor([1.0, 2.0])), TypeError, "T"),
        (dict(T=torch.tensor([True, False])), TypeError, "T"),
        (dict(T=torch.tensor([1, 2, 3])), ValueError, "T"),
        (dict(T=2.0), TypeError, "T"),
    ],
    ids=lambda x: x.__name__ if isinstance(x, type) else (x if isinstance(x, str) else ""),
)
def test_bad_input_raises(over, exc, word):
    with pytest.raises(exc, match=rf"\b{word}\b"):
        lqr(*_args(**over))


def test_out_argument_validated():
    args = _args()
    with pytest.raises(ValueError, match="out.u0"):
        lqr(*args, out=LQRResult(torch.empty(2, 2, 3), torch.empty(2, 2, dtype=torch.int32)))
    with pytest.raises(TypeError, match="out.status"):
        lqr(*args, out=LQRResult(torch.empty(2, 2, 2), torch.empty(2, 2, dtype=torch.int64)))
