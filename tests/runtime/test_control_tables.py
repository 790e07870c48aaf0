"""Plan → per-layer tables → in-place update, shared by every engine (torch, no engine)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ttc_plugins.kernels import residual_control  # noqa: E402
from ttc_plugins.runtime.control_tables import (  # noqa: E402
    AdapterTable,
    ControlTables,
    apply_adapter,
    apply_steering,
    token_slots,
)
from ttc_plugins.types import ControlSpec  # noqa: E402

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
    assert slots.tolist() == [-1, -1, 0, 0, 0, 1, 0]
    assert token_slots([], [], {})[1].tolist() == []
    with pytest.raises(ValueError):
        token_slots(["x"], [1, 2], {})


@pytest.mark.parametrize("mode", ["add", "project"])
@pytest.mark.parametrize("preserve", [False, True])
def test_kernel_matches_the_steering_semantics_per_token(mode, preserve):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(5, H, generator=g)
    original = hidden.clone()
    vectors = torch.randn(2, H, generator=g)
    slot = torch.tensor([1, -1, 0, 1, -1])
    modes = torch.tensor([1 if mode == "project" else 0] * 2, dtype=torch.int32)
    residual_control(hidden, slot, vectors, torch.tensor([0.5, 3.0]), modes, torch.tensor([preserve] * 2))
    for n, s in enumerate(slot.tolist()):
        if s < 0:
            assert torch.equal(hidden[n], original[n]), "untouched tokens must stay bit-identical"
        else:
            torch.testing.assert_close(hidden[n], _steer(original[n], vectors[s], [0.5, 3.0][s], mode, preserve))


def test_each_layer_touches_only_its_tokens_and_steers_them(pm):
    v1, v2 = [1.0, 0, 0, 0, 0, 0], [0, 2.0, 0, 0, 0, 0]
    add = _spec([0, 2], v1, 3.0)
    proj = _spec([2], v2, 0.0, mode="project", preserve=True)
    specs, slots = token_slots(["plain", "add", "proj"], [1, 2, 1], {"add": add, "proj": proj})
    fc = ControlTables(pm, hidden_size=H, num_layers=3).forward(specs, slots)
    assert sorted(fc.steer) == [0, 2] and fc.adapters == {} and fc.num_tokens == 4
    l0, l2 = fc.steer[0], fc.steer[2]
    assert l0.token_idx.tolist() == [1, 2] and not l0.needs_state
    assert l2.token_idx.tolist() == [1, 2, 3] and l2.needs_state
    state = torch.randn(4, H, generator=torch.Generator().manual_seed(1))
    rows = state.index_select(0, l2.token_idx)
    apply_steering(rows, l2)
    torch.testing.assert_close(rows[2], _steer(state[3], torch.tensor(v2), 0.0, "project", True))
    torch.testing.assert_close(rows[0], state[1] + 3.0 * torch.tensor(v1))


def test_ttc_layer_tokens_are_routed_with_their_own_horizon(pm):
    deep = ControlSpec.build("ttc_layer", [1], {"horizon": 16, "scale": 0.5})
    off = ControlSpec.build("ttc_layer", [1], {"horizon": 0, "scale": 1.0})
    specs, slots = token_slots([0, 1, 2], [2, 3, 1], {0: deep, 1: off, 2: _spec([1], [1.0] * H, 2.0)})
    fc = ControlTables(pm, hidden_size=H, num_layers=3).forward(specs, slots)
    routed = fc.adapters[1]
    assert routed.token_idx.tolist() == [0, 1]  # horizon 0 (request 1) is off; steering is separate
    assert routed.horizon.tolist() == [16, 16] and routed.scale.tolist() == [0.5, 0.5]
    assert fc.steer[1].token_idx.tolist() == [5]


def test_apply_adapter_adds_the_scaled_output():
    table = AdapterTable(torch.tensor([0, 1]), torch.tensor([3, 5], dtype=torch.int32), torch.tensor([0.5, 2.0]))
    stream = torch.ones(2, H)
    apply_adapter(stream, table, lambda h, horizon: h * horizon[:, None].float())
    torch.testing.assert_close(stream, torch.tensor([[2.5] * H, [11.0] * H]))


def test_tables_are_cached_per_set_of_controls(pm):
    calls = []

    class Counter:
        from ttc_plugins import hookimpl

        @hookimpl
        def ttc_prepare_controls(self, plan):
            calls.append(len(plan.specs))

    pm.register(Counter(), "counter")
    tables = ControlTables(pm, hidden_size=H, num_layers=3, cache_size=1)
    a, b = _spec([0], [1.0] * H, 1.0), _spec([0], [2.0] * H, 1.0)
    tables.forward([a], torch.tensor([0, 0]))
    tables.forward([a], torch.tensor([-1, 0, 0]))
    assert calls == [1]
    tables.forward([b], torch.tensor([0]))
    tables.forward([a], torch.tensor([0]))  # evicted by b (cache_size 1): built again
    assert calls == [1, 1, 1]


def test_no_controlled_tokens_means_no_work(pm):
    tables = ControlTables(pm, hidden_size=H, num_layers=2)
    assert tables.forward([], torch.tensor([-1, -1])) is None


def test_a_control_that_cannot_be_planned_fails_alone(pm):
    """A plan error is the control's failure, reported per spec; the other controls still apply."""
    bad, good = _spec([5], [1.0] * H, 1.0), _spec([0], [1.0] * H, 1.0)
    out = ControlTables(pm, hidden_size=H, num_layers=3).forward([bad, good], torch.tensor([0, 1]))
    assert set(out.failed) == {bad} and "out of range" in str(out.failed[bad])
    assert out.steer[0].token_idx.tolist() == [1]
