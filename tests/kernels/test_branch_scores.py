"""branch_scores: streaming logsumexp + top-k vs the full log-softmax reference."""

from __future__ import annotations

import importlib

import pytest
import torch

from ttc_plugins.kernels import BranchScores, branch_scores
from ttc_plugins.kernels.branch_scores.reference import branch_scores_reference

RATIO = {torch.float32: 1e-6, torch.float16: 1e-6, torch.bfloat16: 1e-6}  # outputs are fp32 of exact inputs
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
_dt = lambda d: str(d).split(".")[-1]  # noqa: E731


def poisoned(R, k, with_chosen, device):
    return BranchScores(
        torch.full((R, k), float("nan"), device=device),
        torch.full((R, k), -7, dtype=torch.int64, device=device),
        torch.full((R,), float("nan"), device=device) if with_chosen else None,
        torch.full((R,), float("nan"), device=device),
    )


# (R, V, k): 2 splits x 2 chunks, 1 split x 3 chunks (odd vocab), k = V, a wide k in one chunk
CASES = [(3, 700, 5), (4, 555, 8), (2, 7, 7), (2, 100, 64)]


@pytest.mark.parametrize("dtype", DTYPES, ids=_dt)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"R{c[0]}-V{c[1]}-k{c[2]}")
def test_matches_reference(case, dtype, device, assert_close):
    R, V, k = case
    g = torch.Generator().manual_seed(R * V + k)
    # bf16/fp16 logits have many exact ties: exercises the (smaller id first) tie rule
    logits = (torch.randn(R, V, generator=g) * 4).to(dtype).to(device)
    chosen = torch.randint(0, V, (R,), generator=g)
    chosen[0] = V  # out of range -> NaN
    chosen = chosen.to(device)
    out = branch_scores(logits, k, chosen, out=poisoned(R, k, True, device))
    vals, ids, ch, lse = branch_scores_reference(logits.cpu(), k, chosen.cpu())
    assert_close("logsumexp", lse, out.logsumexp.cpu(), RATIO[dtype])
    assert_close("topk_logprobs", vals, out.topk_logprobs.cpu(), RATIO[dtype])
    assert torch.equal(ids, out.topk_ids.cpu()), "top-k ids (ties: smaller id first)"
    assert_close("chosen_logprobs", ch, out.chosen_logprobs.cpu(), RATIO[dtype])
    assert torch.isnan(out.chosen_logprobs[0])


def test_strided_rows_without_chosen(device, assert_close):
    """Logits as a view with a padded row stride (e.g. a vocab-padded LM head); chosen omitted."""
    g = torch.Generator().manual_seed(9)
    wide = torch.randn(3, 640, generator=g).to(device)
    logits = wide[:, :601]
    out = branch_scores(logits, 4, out=poisoned(3, 4, False, device))
    vals, ids, _, lse = branch_scores_reference(logits.cpu(), 4)
    assert out.chosen_logprobs is None
    assert_close("topk_logprobs", vals, out.topk_logprobs.cpu(), 1e-6)
    assert torch.equal(ids, out.topk_ids.cpu())
    assert_close("logsumexp", lse, out.logsumexp.cpu(), 1e-6)


def test_masked_vocab(device):
    """-inf logits (masked tokens) never enter the top-k while k <= number of finite logits."""
    logits = torch.full((2, 300), float("-inf"), device=device)
    logits[0, [5, 77, 299]] = torch.tensor([1.0, 3.0, 2.0], device=device)
    logits[1, 150] = 0.0
    out = branch_scores(logits, 3)
    assert out.topk_ids[0].tolist() == [77, 299, 5]
    assert out.topk_ids[1, 0].item() == 150 and out.topk_logprobs[1, 0].item() == 0.0
    assert out.topk_logprobs[1, 1].item() == float("-inf")


def test_falls_back_to_reference_without_interpreter(monkeypatch):
    op_mod = importlib.import_module("ttc_plugins.kernels.branch_scores.triton_fwd")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(op_mod, "branch_scores_triton", lambda *a, **k: pytest.fail("Triton path taken"))
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(1))
    out = branch_scores(logits, 4, torch.tensor([1, 2, 3]))
    ref = branch_scores_reference(logits, 4, torch.tensor([1, 2, 3]))
    for a, b in zip(out, ref):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        (dict(logits=torch.zeros(2, 3, 4)), ValueError, "logits"),
        (dict(logits=torch.zeros(2, 10, dtype=torch.float64)), TypeError, "logits"),
        (dict(logits=torch.zeros(10, 2).t()), ValueError, "logits"),
        (dict(k=0), ValueError, "k"),
        (dict(k=11), ValueError, "k"),
        (dict(k=2.0), TypeError, "k"),
        (dict(chosen=torch.zeros(2)), TypeError, "chosen"),
        (dict(chosen=torch.zeros(3, dtype=torch.int64)), ValueError, "chosen"),
        (dict(chosen=torch.zeros(2, dtype=torch.int64, device="meta")), ValueError, "chosen"),
    ],
    ids=lambda x: x.__name__ if isinstance(x, type) else (x if isinstance(x, str) else ""),
)
def test_bad_input_raises(kwargs, exc, word):
    args = dict(logits=torch.zeros(2, 10), k=3, chosen=None)
    args.update(kwargs)
    with pytest.raises(exc, match=rf"\b{word}\b"):
        branch_scores(**args)
