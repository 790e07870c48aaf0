"""The worker-side token -> request -> control map, without an engine (torch only)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

torch = pytest.importorskip("torch")

from ttc_plugins.types import ControlSpec, RequestContext  # noqa: E402
from ttc_plugins.vllm_backend.worker import ControlState, RowState  # noqa: E402


@dataclass
class _Meta:
    query_start_loc: torch.Tensor


@dataclass
class _FC:
    attn_metadata: dict


def _spec(layers, scale, mode="add"):
    return ControlSpec.build("steering", layers, {"vector": [1.0, 0.0, 0.0, 0.0], "scale": scale, "mode": mode,
                                                  "preserve_norm": False})


def test_forward_plan_maps_each_token_to_its_own_requests_control():
    state = ControlState(hidden_size=4, num_layers=3)
    a, b = _spec([0, 2], 1.0), _spec([2], 5.0, "project")
    state.rows = {
        0: RowState(RequestContext("r0", control=a), []),
        2: RowState(RequestContext("r2", control=b), []),
        3: RowState(RequestContext("r3", control=a), []),
    }
    state.rows_changed()
    fc = _FC({"layer": _Meta(torch.tensor([0, 3, 4, 6, 7]))})  # 4 requests: 3, 1, 2, 1 tokens
    plan = state.forward_plan(fc, torch.device("cpu"))
    assert sorted(plan.steer) == [0, 2] and plan.adapters == {}
    assert plan.steer[0].token_idx.tolist() == [0, 1, 2, 6]  # request 0 and 3 (spec a) only
    l2 = plan.steer[2]
    assert l2.token_idx.tolist() == [0, 1, 2, 4, 5, 6]
    # tokens of request 2 use spec b's row in the layer-2 tables, the others spec a's
    rows = l2.token_slot.tolist()
    assert rows[:3] == [rows[0]] * 3 and rows[3:5] == [rows[3]] * 2 and rows[5] == rows[0] and rows[0] != rows[3]
    assert l2.scales[rows[3]].item() == 5.0 and l2.modes[rows[3]].item() == 1
    assert state.forward_plan(fc, torch.device("cpu")) is plan  # once per forward


def test_forward_plan_routes_ttc_layer_tokens_with_their_own_horizon():
    state = ControlState(hidden_size=4, num_layers=3)
    deep = ControlSpec.build("ttc_layer", [1], {"horizon": 16, "scale": 0.5})
    off = ControlSpec.build("ttc_layer", [1], {"horizon": 0, "scale": 1.0})
    state.rows = {
        0: RowState(RequestContext("r0", control=deep), []),
        1: RowState(RequestContext("r1", control=off), []),
        2: RowState(RequestContext("r2", control=_spec([1], 2.0)), []),
    }
    state.rows_changed()
    plan = state.forward_plan(_FC({"layer": _Meta(torch.tensor([0, 2, 5, 6]))}), torch.device("cpu"))
    assert sorted(plan.adapters) == [1] and sorted(plan.steer) == [1]
    routed = plan.adapters[1]
    assert routed.token_idx.tolist() == [0, 1]  # horizon 0 (request 1) is off; steering is separate
    assert routed.horizon.tolist() == [16, 16] and routed.scale.tolist() == [0.5, 0.5]
    assert plan.steer[1].token_idx.tolist() == [5]


def test_no_controls_no_plan():
    state = ControlState(hidden_size=4, num_layers=3)
    state.rows = {0: RowState(RequestContext("r0"), [])}
    state.rows_changed()
    assert not state.has_controls
    assert state.forward_plan(_FC({"l": _Meta(torch.tensor([0, 2]))}), torch.device("cpu")) is None
    assert state.forward_plan(_FC({}), torch.device("cpu")) is None  # profiling run


def test_duplicate_processor_is_inert():
    state = ControlState()
    first, second = object(), object()
    assert state.claim(first) and state.claim(first) and not state.claim(second)
