"""SGLang-only behaviour of ``sglang_backend.search_ops.SGLangEngineOps`` (the shared behaviour,
every strategy included, is in ``integration/conformance/test_search_ops.py``): the seed
derivation, real radix-cache reuse, EOS mapping and re-scoring below temperature 1.

They run on the suite's ONE in-process engine (``engine``: tiny random Llama, float32,
torch_native attention). SGLang honours per-request ``sampling_seed`` only with
``enable_deterministic_inference``, which it refuses for torch_native (CPU), so the ops run with
``seeded=False`` here: batch independence is checked on greedy steps, and the seed derivation on
the sampling parameters the ops send.
"""

from __future__ import annotations

import pytest

pytest.importorskip("sglang")

from ttc_plugins.search import ExtendRequest, SamplingConfig, StepStop  # noqa: E402
from ttc_plugins.sglang_backend.search_ops import SGLangEngineOps, sampling_params  # noqa: E402
from ttc_plugins.testing.memory_engine import continuation_seed  # noqa: E402
from ttc_plugins.types import Branch, RequestContext  # noqa: E402

from integration.common.search import LONG_TEXT, NO_DELIM  # noqa: E402
from integration.common.search import step_request as _req  # noqa: E402


# -- SGLang-only -------------------------------------------------------------------------------
def test_seeded_ops_refuse_an_engine_that_ignores_sampling_seed(engine):
    assert engine.server_args.enable_deterministic_inference is False
    with pytest.raises(ValueError, match="enable_deterministic_inference=True"):
        SGLangEngineOps(engine)


def test_continuations_carry_the_shared_seed_derivation(ops_pm):
    ops, _, _ = ops_pm
    req = _req(ops, "The answer is", bid="x", n=3, seed=3, key="r.0@1",
               until=StepStop("\n", 5, stop=("END", "\n")))
    sps = [sampling_params(req, i, seeded=True) for i in range(req.n)]
    assert [sp["sampling_seed"] for sp in sps] == [continuation_seed(3, "r.0@1", i) for i in range(3)]
    assert len({sp["sampling_seed"] for sp in sps}) == 3
    assert sps[0]["stop"] == ["END", "\n"] and sps[0]["no_stop_trim"] is True and sps[0]["max_new_tokens"] == 5
    greedy = _req(ops, "x", temperature=0.0)
    assert "sampling_seed" not in sampling_params(greedy, 0, seeded=True)
    assert "sampling_seed" not in sampling_params(req, 0, seeded=False)


def test_forked_children_reuse_the_parents_prefix(ops_pm):
    ops, pm, rec = ops_pm
    parent = _req(ops, LONG_TEXT + "# forked", bid="parent", temperature=1.0)
    (first,) = ops.extend([parent])[0]
    child_prompt = parent.branch.all_token_ids + first.token_ids
    children = [Branch(id=f"c{i}", parent_id="parent", prompt_token_ids=parent.branch.prompt_token_ids,
                       token_ids=first.token_ids) for i in range(2)]
    before = ops.kv_stats()
    n_reports = len(rec.kv_reports)
    steps = ops.extend([ExtendRequest(ctx=RequestContext("parent"), branch=c, until=StepStop(NO_DELIM, 6),
                                      sampling=SamplingConfig(1.0), n=2) for c in children])
    reused = [s.tokens_reused for ss in steps for s in ss]
    # the radix tree holds the parent's prompt and every step token it fed back (all but the last)
    assert all(len(parent.branch.all_token_ids) <= r <= len(child_prompt) - 1 for r in reused), reused
    after = ops.kv_stats()
    assert after.tokens_reused - before.tokens_reused == sum(reused)
    assert after.tokens_computed - before.tokens_computed == sum(len(child_prompt) - r + 6 for r in reused)
    assert after.peak_blocks >= len(child_prompt) and ops.kv_samples > 0
    # one ttc_kv_report per continuation with the same numbers
    last = rec.kv_reports[n_reports:]
    assert [st.tokens_reused for _, st in last] == reused
    assert all(st.tokens_computed == len(child_prompt) - st.tokens_reused + 6 for _, st in last)


# -- strategies end to end ---------------------------------------------------------------------


def test_eos_is_reported_and_kept(ops_pm, engine):
    """Map a real engine output that ended at EOS (forced with the backend's force_token decoder)."""
    ops, _, _ = ops_pm
    eos = ops.tokenizer.eos_token_id
    req = _req(ops, "Search", temperature=0.0)
    o = engine.generate(input_ids=list(req.branch.all_token_ids), return_logprob=True,
                        sampling_params={"max_new_tokens": 5, "temperature": 0.0,
                                         "custom_params": {"ttc": {"decoding": [{"name": "force_token",
                                                                                 "token_id": eos}]}}})
    step = ops._to_step(req, o)
    assert step.stop_reason == "eos" and step.token_ids == (eos,) and step.text == ""


def test_logprobs_below_temperature_one_are_rescored_raw(ops_pm, memory_ref):
    """SGLang returns logprobs of the temperature-scaled distribution: below T=1 the ops re-score
    the step (the raw logprobs strategies compare), and the result equals the reference's."""
    ops, _, _ = ops_pm
    rescored = ops.rescored
    req = _req(ops, "Tree search with a cache", temperature=0.7)
    (step,) = ops.extend([req])[0]
    assert ops.rescored == rescored + 1
    ctx = list(req.branch.all_token_ids)
    got = ops.score_logprobs([(ctx, list(step.token_ids))])
    assert got[0] == pytest.approx(step.logprob, abs=2e-3)
    assert got[0] == pytest.approx(memory_ref.score_logprobs([(ctx, list(step.token_ids))])[0], abs=2e-3)
