"""residual_control: Triton kernel vs reference, in place, untouched rows bit-for-bit, validation."""

from __future__ import annotations

import importlib

import pytest
import torch

from ttc_plugins.kernels import MODE_ADDITIVE, MODE_PROJECTION, residual_control
from ttc_plugins.kernels.residual_control.reference import residual_control_reference
from ttc_plugins.kernels.residual_control.triton_fwd import residual_control_triton

RATIO = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
_dt = lambda d: str(d).split(".")[-1]  # noqa: E731


def make_inputs(N, Hd, S, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, Hd, generator=g).to(dtype).to(device)
    # every case: additive and projection slots, norm preservation on and off, an unknown mode
    # (2), a zero vector, slot -1 rows and out-of-range slots
    slot = torch.randint(-1, S + 1, (N,), generator=g)
    slot[0], slot[-1] = -1, S  # at least one "no control" and one out-of-range row
    vectors = torch.randn(S, Hd, generator=g)
    vectors[S - 1] = 0.0
    scales = torch.randn(S, generator=g) * 2
    modes = torch.tensor([MODE_ADDITIVE, MODE_PROJECTION, 2, MODE_PROJECTION, MODE_ADDITIVE] * S)[:S]
    preserve = torch.tensor([True, False, True, True, False] * S)[:S]
    return [x.to(device) for x in (hidden, slot, vectors, scales, modes, preserve)]


# (N, Hd, S, block): block=None is the register (single-tile) path, a small block forces the
# three-pass path that wide rows (> 8192) take on the GPU
CASES = [(13, 100, 4, None), (7, 300, 5, 64), (5, 1, 2, None), (9, 257, 3, 128)]


@pytest.mark.parametrize("dtype", DTYPES, ids=_dt)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"N{c[0]}-Hd{c[1]}-S{c[2]}" + ("" if c[3] is None else f"-blk{c[3]}"))
def test_matches_reference(case, dtype, device, assert_close):
    N, Hd, S, block = case
    hidden, slot, vectors, scales, modes, preserve = make_inputs(N, Hd, S, dtype, device)
    before = hidden.clone()
    expected = residual_control_reference(hidden.clone().cpu(), slot.cpu(), vectors.cpu(), scales.cpu(), modes.cpu(), preserve.cpu())
    if block is None:
        out = residual_control(hidden, slot, vectors, scales, modes, preserve)
        assert out is hidden
    else:
        residual_control_triton(hidden, slot, vectors, scales, modes, preserve, block=block)
    assert_close("hidden", expected, hidden.cpu(), RATIO[dtype])

    S_ = vectors.shape[0]
    slot_c = slot.clamp(0, S_ - 1)
    untouched = (slot < 0) | (slot >= S_) | ((modes[slot_c] != 0) & (modes[slot_c] != 1))
    assert untouched.any()
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    assert torch.equal(hidden[untouched].view(bits), before[untouched].view(bits)), "untouched rows changed"
    changed = ~untouched & (vectors[slot_c].abs().sum(-1) > 0)
    if changed.any() and Hd > 1:
        assert not torch.equal(hidden[changed], before[changed])


def test_semantics(device):
    """Projection sets the component along v^ to the scale; preserve_norm keeps |h|."""
    Hd = 33
    g = torch.Generator().manual_seed(1)
    h = torch.randn(4, Hd, generator=g).to(device)
    v = torch.randn(2, Hd, generator=g).to(device)
    h0 = h.clone()
    residual_control(
        h, torch.tensor([0, 1, 0, 1], device=device), v, torch.tensor([0.75, -1.5], device=device),
        torch.tensor([MODE_PROJECTION, MODE_PROJECTION], device=device), torch.tensor([False, True], device=device),
    )
    v_hat = v / v.norm(dim=-1, keepdim=True)
    along = (h[[0, 2]] * v_hat[0]).sum(-1)
    assert torch.allclose(along, torch.full_like(along, 0.75), atol=1e-5)
    assert torch.allclose(h[[1, 3]].norm(dim=-1), h0[[1, 3]].norm(dim=-1), rtol=1e-5)


def test_compiles_without_graph_break(device):
    """Engines call it inside a torch.compile'd forward: it must trace as one graph."""
    hidden, slot, vectors, scales, modes, preserve = make_inputs(6, 40, 3, torch.float32, device, seed=2)
    expected = residual_control_reference(hidden.clone(), slot, vectors, scales, modes, preserve)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def step(h):
        h = h * 1.0
        residual_control(h, slot, vectors, scales, modes, preserve)
        return h + 0.0

    out = step(hidden)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


def test_falls_back_to_reference_without_interpreter(monkeypatch):
    op_mod = importlib.import_module("ttc_plugins.kernels.residual_control.triton_fwd")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(op_mod, "residual_control_triton", lambda *a, **k: pytest.fail("Triton path taken"))
    hidden, slot, vectors, scales, modes, preserve = make_inputs(8, 20, 3, torch.float32, "cpu", seed=3)
    expected = residual_control_reference(hidden.clone(), slot, vectors, scales, modes, preserve)
    residual_control(hidden, slot, vectors, scales, modes, preserve)
    assert torch.equal(hidden, expected)


def _args(**over):
    base = dict(
        hidden=torch.zeros(4, 8), token_slot=torch.zeros(4, dtype=torch.int64), vectors=torch.zeros(2, 8),
        scales=torch.zeros(2), modes=torch.zeros(2, dtype=torch.int64), preserve_norm=torch.zeros(2, dtype=torch.bool),
    )
    base.update(over)
    return base


@pytest.mark.parametrize(
    "name, value, exc",
    [
        ("hidden", torch.zeros(4, 8, 2), ValueError),
        ("hidden", torch.zeros(4, 8, dtype=torch.float64), TypeError),
        ("hidden", torch.zeros(8, 4).t(), ValueError),
        ("token_slot", torch.zeros(5, dtype=torch.int64), ValueError),
        ("token_slot", torch.zeros(4), TypeError),
        ("vectors", torch.zeros(2, 7), ValueError),
        ("vectors", torch.zeros(2, 8, device="meta"), ValueError),
        ("scales", torch.zeros(3), ValueError),
        ("modes", torch.zeros(2), TypeError),
        ("preserve_norm", torch.zeros(2, dtype=torch.int64), TypeError),
        ("preserve_norm", [True, False], TypeError),
    ],
    ids=lambda x: x.__name__ if isinstance(x, type) else (x if isinstance(x, str) else ""),
)
def test_bad_input_raises(name, value, exc):
    with pytest.raises(exc, match=name):
        residual_control(**_args(**{name: value}))
