"""A worker-side hook that raises fails its own requests: the rest of the batch is what a clean
run gives (torch, no engine; the engines' seams are tested in ``integration/conformance``)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from ttc_plugins import hookimpl  # noqa: E402
from ttc_plugins.runtime import faults  # noqa: E402
from ttc_plugins.runtime.control_tables import ControlTables, SteerTable, apply_steering  # noqa: E402
from ttc_plugins.types import ControlPlan, ControlSpec, LogitsBatch, LogitsRow, RequestContext  # noqa: E402

H = 4


def _rows(*ids):
    return [LogitsRow(index=i, ctx=RequestContext(request_id=rid), output_token_ids=[]) for i, rid in enumerate(ids)]


class AddOne:
    """Adds 1 to every opted-in row (a well-behaved plugin: run twice, it would add 2)."""

    @hookimpl
    def ttc_process_logits(self, batch):
        for row in batch.rows:
            batch.logits[row.index] += 1.0


class RaiseFor:
    """Edits every row it is given, then raises if one of them is ``bad`` (a partial write)."""

    def __init__(self, bad):
        self.bad = bad

    @hookimpl
    def ttc_process_logits(self, batch):
        for row in batch.rows:
            batch.logits[row.index] -= 100.0
        if any(row.ctx.request_id == self.bad for row in batch.rows):
            raise RuntimeError(f"boom for {self.bad}")


def test_process_logits_fails_only_the_row_whose_hook_raised(pm):
    pm.register(AddOne(), name="add-one")
    pm.register(RaiseFor("b"), name="raise-for-b")
    logits = torch.zeros(4, 3)
    rows = _rows("a", "b", "c")
    failed = faults.process_logits(pm, LogitsBatch(logits=logits, rows=rows))
    assert list(failed) == [1] and "RuntimeError: boom for b" in str(failed[1])
    assert "ttc_process_logits" in str(failed[1]) and "test_faults.py" in str(failed[1])
    assert torch.equal(logits[1], torch.zeros(3)), "the failed row gets its logits back"
    # the others are what one clean pass of both plugins gives (+1, -100), not two passes
    assert logits[0].tolist() == logits[2].tolist() == [-99.0] * 3
    assert torch.equal(logits[3], torch.zeros(3)), "a row that did not opt in is never touched"


def test_process_logits_without_failure_runs_the_batch_once(pm):
    pm.register(AddOne(), name="add-one")
    logits = torch.zeros(2, 3)
    assert faults.process_logits(pm, LogitsBatch(logits=logits, rows=_rows("a", "b"))) == {}
    assert logits.tolist() == [[1.0] * 3] * 2


def test_accept_token_gives_the_verdict_or_the_failure(pm):
    class Judge:
        @hookimpl
        def ttc_accept_token(self, ctx, token_id, position):
            if token_id == 13:
                raise ValueError("unlucky")
            return token_id % 2 == 0

    pm.register(Judge(), name="judge")
    ctx = RequestContext(request_id="r")
    assert faults.accept_token(pm, ctx, 2, 0) is True
    assert faults.accept_token(pm, ctx, 3, 1) is False
    failure = faults.accept_token(pm, ctx, 13, 2)
    assert isinstance(failure, faults.HookFailure) and "ValueError: unlucky" in str(failure)


def _steer(layers, scale, vector=None):
    return ControlSpec.build("steering", layers, {"vector": vector or [1.0] * H, "scale": scale, "mode": "add",
                                                  "preserve_norm": False})


class RaiseOnScale:
    """A third-party control planner that raises for one spec (and writes for the others)."""

    @hookimpl
    def ttc_prepare_controls(self, plan):
        for slot, spec in enumerate(plan.specs):
            if spec.args.get("scale") == 7.0:
                raise RuntimeError("planner bug")


def test_prepare_controls_isolates_a_raising_planner_per_spec(pm):
    pm.register(RaiseOnScale(), name="raise-on-7")
    good, bad = _steer([0], 1.0), _steer([1], 7.0)
    plan = ControlPlan(specs=[good, bad], hidden_size=H, num_layers=2)
    failed = faults.prepare_controls(pm, plan)
    assert list(failed) == [1] and "planner bug" in str(failed[1])
    assert plan.vectors == {0: {0: plan.vectors[0][0]}}, "the good spec is planned, the failed one is gone"


@pytest.mark.parametrize("vector,scale,why", [
    ([math.inf] + [0.0] * (H - 1), 1.0, "not finite"),
    ([1.0] * H, math.nan, "not finite"),
    ([1e3] * H, 100.0, "within +-10000"),
])
def test_a_planned_write_that_could_overflow_fails_its_spec(pm, vector, scale, why):
    class Unsafe:  # a planner that bypasses the request validation (it writes its own vector)
        @hookimpl
        def ttc_prepare_controls(self, plan):
            for slot, spec in enumerate(plan.specs):
                if spec.args["scale"] == 2.0:
                    plan.add_vector(1, slot, vector, scale)

    pm.register(Unsafe(), name="unsafe")
    tables = ControlTables(pm, hidden_size=H, num_layers=2)
    ok, unsafe = _steer([0], 1.0), _steer([0], 2.0)
    out = tables.forward([ok, unsafe], torch.tensor([0, 0, 1]))
    assert set(out.failed) == {unsafe} and why in str(out.failed[unsafe])
    assert 1 not in out.steer, "nothing of the failed spec is applied"
    assert out.steer[0].token_idx.tolist() == [0, 1]  # the good spec's tokens only, at its own layer


def test_a_nonfinite_steered_row_is_left_unsteered_and_reported():
    stream = torch.tensor([[1.0] * H, [3e38] * H])
    original = stream.clone()
    table = SteerTable(token_idx=torch.tensor([0, 1]), token_slot=torch.tensor([0, 0]),
                       vectors=torch.tensor([[3e38] * H]), scales=torch.tensor([1.0]),
                       modes=torch.tensor([0], dtype=torch.int32), preserve_norm=torch.tensor([False]),
                       needs_state=False)
    bad = apply_steering(stream, table)
    assert bad.tolist() == [False, True]
    assert apply_steering(torch.ones(2, H), table) is None  # all finite: nothing to report
    assert torch.equal(stream[1], original[1]) and torch.isfinite(stream).all()
    assert float(stream[0, 0]) == pytest.approx(3e38, rel=1e-6)
