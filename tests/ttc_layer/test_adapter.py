"""The TTC adapter: per-token horizons, T = 0 is exactly off, batch independence, safe files."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ttc_plugins.kernels.lqr.reference import lqr_reference  # noqa: E402
from ttc_plugins.ttc_layer.adapter import TTCAdapter, TTCAdapterConfig  # noqa: E402


def _fresh() -> TTCAdapter:
    torch.manual_seed(0)
    return TTCAdapter(TTCAdapterConfig(hidden_size=24, heads=2, state_dim=5, control_dim=3, b_rank=4, q_rank=3))


@pytest.fixture
def adapter():
    """A random adapter with its gate open (a trained one, as far as these tests care)."""
    a = _fresh()
    with torch.no_grad():
        a.gate.fill_(1.0)
    return a


def test_a_fresh_adapter_adds_exact_zeros():
    """The gate starts closed: added to the residual stream, a fresh adapter leaves it
    bit-identical at every horizon (so the model's logits are too)."""
    fresh = _fresh()
    x = torch.randn(6, 24) * 3
    delta = fresh(x, torch.tensor([0, 1, 4, 16, 64, 2]))
    assert torch.equal(x + delta, x) and not delta.abs().any()
    for dtype in (torch.bfloat16, torch.float16):
        assert torch.equal(x.to(dtype) + fresh(x.to(dtype), torch.tensor([3] * 6)), x.to(dtype))


def test_a_closed_gate_still_learns():
    """Zero gate, nonzero gradient: the first optimiser step opens it."""
    fresh = _fresh()
    fresh(torch.randn(3, 24), torch.tensor([3, 5, 2])).sum().backward()
    assert fresh.gate.grad is not None and fresh.gate.grad.abs().sum() > 0


def test_a_file_from_before_the_gate_reads_as_ungated(adapter, tmp_path):
    from safetensors.torch import save_file

    adapter.save(tmp_path / "new.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "new.safetensors"), framework="pt") as f:
        meta = f.metadata()
        old = {k: f.get_tensor(k) for k in f.keys() if k != "gate"}
    save_file(old, str(tmp_path / "old.safetensors"), metadata=meta)
    again = TTCAdapter.load(tmp_path / "old.safetensors")
    x, T = torch.randn(2, 24), torch.tensor([4, 8])
    torch.testing.assert_close(again(x, T), adapter(x, T))


def test_zero_horizon_is_exactly_off(adapter):
    x = torch.randn(4, 24)
    delta = adapter(x, torch.tensor([0, 3, 0, 7]))
    assert torch.equal(delta[0], torch.zeros(24)) and torch.equal(delta[2], torch.zeros(24))
    assert delta[1].abs().sum() > 0 and delta[3].abs().sum() > 0


def test_rows_are_independent_of_the_batch(adapter):
    x = torch.randn(5, 24)
    T = torch.tensor([1, 4, 9, 2, 6])
    together = adapter(x, T)
    for i in range(5):
        torch.testing.assert_close(adapter(x[i : i + 1], T[i : i + 1])[0], together[i], rtol=1e-5, atol=1e-6)


def test_first_control_matches_the_float64_riccati_reference(adapter):
    x = torch.randn(3, 24)
    T = torch.tensor([2, 5, 11])
    p = adapter.problem(x, T)
    u_ref, status = lqr_reference(**p)
    assert (status == 0).all()
    from ttc_plugins.kernels import lqr

    u = lqr(**p)[0]
    torch.testing.assert_close(u.double(), u_ref, rtol=1e-4, atol=1e-6)


def test_gradients_reach_every_parameter(adapter):
    x = torch.randn(3, 24, requires_grad=True)
    adapter(x, torch.tensor([3, 0, 4])).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in adapter.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_save_and_load_round_trip(adapter, tmp_path):
    path = tmp_path / "layer6.safetensors"
    adapter.save(path)
    again = TTCAdapter.load(path)
    assert again.config == adapter.config
    x, T = torch.randn(2, 24), torch.tensor([4, 8])
    torch.testing.assert_close(again(x, T), adapter(x, T))


def test_load_refuses_a_file_without_adapter_metadata(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="not a TTC adapter file"):
        TTCAdapter.load(tmp_path / "x.safetensors")
