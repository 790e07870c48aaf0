"""Tensor parallelism on SGLang, by the structure the controls depend on.

SGLang's CPU build cannot serve ``--tp 2`` (``ValueError: Expected a cuda device, but got: cpu``:
its TP group builds a PyNccl communicator), so ``conformance/test_parallel``'s tp2 case is skipped
there with that error, after checking that both TP ranks' schedulers registered the plugin. What
TP changes for the residual control is covered here, per rank: two processes in a real gloo
group each run the worker's layer hook (:mod:`tp_ranks`) on SGLang's ``ResidualStream`` while a
layer's output is still this rank's partial of the TP sum, and the stream every rank hands the
next layer must equal one rank's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from integration.common import scenarios

RANKS = Path(__file__).with_name("tp_ranks.py")


def _run(world: int, spec: dict, tmp: Path) -> list[dict]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "spec.json").write_text(json.dumps(spec))
    init = tmp / "init"
    procs = [subprocess.Popen([sys.executable, str(RANKS), str(r), str(world), str(init), str(tmp / "spec.json"),
                               str(tmp / f"rank{r}.json")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(world)]
    for r, p in enumerate(procs):
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, f"rank {r} of {world} failed:\n{out[-3000:]}"
    return [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(world)]


CASES = [("owed", True), ("complete", False)]  # a layer output still owing the TP sum / already reduced


@pytest.fixture(scope="module")
def ranks(tiny_model, ttc_adapter, tmp_path_factory) -> tuple[dict, dict, list[dict]]:
    """(spec, one rank's results, the two ranks' results), each by case name."""
    cfg = json.loads((Path(tiny_model) / "config.json").read_text())
    layer, path = ttc_adapter
    # one extend batch: a plain request between two steerings (one reads the stream: project +
    # preserve_norm) and a TTC adapter control, each with its own prompt length
    ttcs = [scenarios.STEER_A, None, scenarios.STEER_B, scenarios.ttc_layer(8, layers=[layer])]
    spec = {"hidden_size": cfg["hidden_size"], "num_layers": cfg["num_hidden_layers"], "vocab_size": cfg["vocab_size"],
            "ttc_layers": {str(layer): path}, "seed": 7, "counts": [3, 2, 4, 5],
            "cases": [{"name": name, "owed": owed, "ttcs": ttcs} for name, owed in CASES]
            + [{"name": "plain", "owed": True, "ttcs": [None] * len(ttcs)}]}
    tmp = tmp_path_factory.mktemp("tp")
    (one,) = _run(1, spec, tmp / "tp1")
    return spec, one, _run(2, spec, tmp / "tp2")


@pytest.mark.parametrize("case", [name for name, _ in CASES], ids=["output-owes-the-tp-sum", "output-complete"])
def test_residual_controls_on_two_tp_ranks_match_one_rank(ranks, case):
    spec, one, two = ranks
    for res in [one, *two]:
        assert res[case]["failed"] == {}, f"a control failed: {res[case]['failed']}"
    ref = [torch.tensor(s) for s in one[case]["streams"]]
    for rank, res in enumerate(two):
        for layer, (got, want) in enumerate(zip(res[case]["streams"], ref, strict=True)):
            worst = (torch.tensor(got) - want).abs().max().item()
            # the ranks' partial sums round differently from one rank's complete output
            assert worst <= 1e-4, f"rank {rank} of 2, layer {layer}: stream off by {worst:.2e} from one rank's"
    assert two[0][case]["streams"] == two[1][case]["streams"], "the TP ranks hand their next layers different streams"

    # guard the test itself: the controls change the stream on their rows, and only there
    plain = torch.tensor(one["plain"]["streams"][-1])
    ends = torch.tensor(spec["counts"]).cumsum(0).tolist()
    changed = [(ref[-1][e - c:e] - plain[e - c:e]).abs().max().item() for e, c in zip(ends, spec["counts"])]
    assert changed[1] == 0.0, f"the plain request's rows changed by {changed[1]:.2e}"
    assert all(changed[i] > 1e-3 for i in (0, 2, 3)), f"a control changed nothing: {changed}"
