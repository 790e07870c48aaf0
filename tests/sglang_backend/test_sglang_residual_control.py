"""Token → request mapping, plan → tensors, and the in-place update math (torch, no sglang)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ttc_plugins.sglang_backend.layers.residual_control import (  # noqa: E402
    build_forward_controls,
    control_delta,
    token_slots,
)
from ttc_plugins.kernels import residual_control  # noqa: E402

from ttc_plugins.types import ControlPlan, ControlSpec  # noqa: E402

H = 6


def _spec(layers, vector, scale, mode="add", preserve=False):
    return ControlSpec.build("steering", layers, {"vector": vector, "scale": scale, "mode": mode, "preserve_norm": preserve})


def _steer(h, v, scale, mode, preserve):
    """The semantics of ttc_plugins/controls/steering.py, written out independently."""
    if mode == "add":
        out = h + scale * v
    else:
        u = v / v.norm()
        out = h - (h @ u) * u + scale * u
    if preserve:
        out = out * (h.norm() / out.norm())
    return out


def test_token_slots_dedup_specs_and_leave_plain_tokens_at_minus_one():
    a, b = _spec([0], [1.0] * H, 1.0), _spec([1], [2.0] * H, 1.0)
    specs, slots = token_slots(["p", "a1", "b", "a2"], [2, 3, 1, 1], {"a1": a, "a2": a, "b": b, "p": None})
    assert specs == [a, b]
    assert slots == [-1, -1, 0, 0, 0, 1, 0]
    with pytest.raises(ValueError):
        token_slots(["x"], [1, 2], {})


@pytest.mark.parametrize("mode", ["add", "project"])
@pytest.mark.parametrize("preserve", [False, True])
def test_update_matches_the_steering_semantics_per_token(mode, preserve):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(5, H, generator=g)
    original = hidden.clone()
    vectors = torch.randn(2, H, generator=g)
    slot = torch.tensor([1, -1, 0, 1, -1])
    modes = torch.tensor([1 if mode == "project" else 0] * 2, dtype=torch.int32)
    keep = torch.tensor([preserve] * 2)
    residual_control(hidden, slot, vectors, torch.tensor([0.5, 3.0]), modes, keep)
    scales = [0.5, 3.0]
    for n, s in enumerate(slot.tolist()):
        if s < 0:
            assert torch.equal(hidden[n], original[n]), "untouched tokens must stay bit-identical"
        else:
            torch.testing.assert_close(hidden[n], _steer(original[n], vectors[s], scales[s], mode, preserve))


def test_forward_controls_per_layer_and_delta(pm):
    v1 = [1.0, 0, 0, 0, 0, 0]
    v2 = [0, 2.0, 0, 0, 0, 0]
    add = _spec([0, 2], v1, 3.0)
    proj = _spec([2], v2, 0.0, mode="project", preserve=True)
    specs, slots = token_slots(["plain", "add", "proj"], [1, 2, 1], {"add": add, "proj": proj})
    fc = build_forward_controls(pm, specs, slots, hidden_size=H, num_layers=3)
    assert sorted(fc.layers) == [0, 2]
    l0, l2 = fc.layers[0], fc.layers[2]
    assert l0.token_slot.tolist() == [-1, 0, 0, -1] and not l0.needs_state
    assert l2.token_slot.tolist() == [-1, 0, 0, 1] and l2.needs_state
    d0 = control_delta(None, 4, H, l0)
    assert torch.equal(d0[0], torch.zeros(H)) and torch.equal(d0[3], torch.zeros(H))
    torch.testing.assert_close(d0[1], 3.0 * torch.tensor(v1))
    state = torch.randn(4, H, generator=torch.Generator().manual_seed(1))
    d2 = control_delta(state, 4, H, l2)
    torch.testing.assert_close(state[3] + d2[3], _steer(state[3], torch.tensor(v2), 0.0, "project", True))
    torch.testing.assert_close(state[1] + d2[1], state[1] + 3.0 * torch.tensor(v1))
    assert torch.equal(d2[0], torch.zeros(H))
    with pytest.raises(ValueError, match="reads the residual stream"):
        control_delta(None, 4, H, l2)


def test_no_controlled_tokens_means_no_work(pm):
    assert build_forward_controls(pm, [], [-1, -1], hidden_size=H, num_layers=2) is None


def test_plan_validation_errors_surface(pm):
    bad = _spec([5], [1.0] * H, 1.0)
    with pytest.raises(ValueError, match="out of range"):
        build_forward_controls(pm, [bad], [0], hidden_size=H, num_layers=3)
    assert ControlPlan.MODE_PROJECT == 1
