"""An engine's search operations (``EngineOps``) against the reference MemoryEngine, and every
registered strategy end to end over them, on every engine."""

from __future__ import annotations

import time

import pytest

from ttc_plugins.search import SearchPrompt, StepStop, VerifyRequest, run_search

from integration.common.search import LONG_TEXT, NO_DELIM, assert_search_independent_of_others
from integration.common.search import step_request as _req


def test_greedy_continuations_do_not_depend_on_the_batch(ops_pm):
    ops, _, _ = ops_pm
    alone = ops.extend([_req(ops, "The answer is", bid="x", temperature=0.0)])[0]
    batched = ops.extend([
        _req(ops, "Hello world", bid="y", n=3),
        _req(ops, LONG_TEXT, bid="z", temperature=0.0),
        _req(ops, "The answer is", bid="x", n=2, temperature=0.0),
    ])
    assert [len(ss) for ss in batched] == [3, 1, 2]
    assert all(s.token_ids == alone[0].token_ids for s in batched[2])
    assert [s.logprob for s in batched[2]] == pytest.approx([alone[0].logprob] * 2, abs=1e-4)
    assert all(len(s.token_ids) == 8 and s.stop_reason == "length" and s.branch_id == "x" for s in batched[2])
    assert all(s.branch_id == "y" and len(s.token_ids) == 8 for s in batched[0])


def test_greedy_steps_match_the_reference_engine(ops_pm, memory_ref):
    ops, _, _ = ops_pm
    for text in ("Search", "def main():\n", LONG_TEXT):
        assert ops.encode(text) == memory_ref.encode(text)
        (v,) = ops.extend([_req(ops, text, temperature=0.0, until=StepStop(NO_DELIM, 12))])[0]
        (m,) = memory_ref.extend([_req(memory_ref, text, temperature=0.0, until=StepStop(NO_DELIM, 12))])[0]
        assert v.token_ids == m.token_ids and v.text == m.text and v.stop_reason == m.stop_reason == "length"
        assert v.logprob == pytest.approx(m.logprob, abs=2e-3)


def test_stop_reasons_delimiter_stop_and_length(ops_pm, memory_ref):
    ops, _, _ = ops_pm
    (greedy,) = ops.extend([_req(ops, "Search", temperature=0.0, until=StepStop(NO_DELIM, 8))])[0]
    assert greedy.stop_reason == "length" and len(greedy.token_ids) == 8
    delim = ops.tokenizer.decode(list(greedy.token_ids[2:3]))
    assert delim.strip(), f"pick a visible delimiter, got {delim!r}"
    (d,) = ops.extend([_req(ops, "Search", temperature=0.0, until=StepStop(delim, 8))])[0]
    (dm,) = memory_ref.extend([_req(memory_ref, "Search", temperature=0.0, until=StepStop(delim, 8))])[0]
    assert d.stop_reason == "delimiter" and delim in d.text
    assert d.token_ids == greedy.token_ids[: len(d.token_ids)] and len(d.token_ids) <= 3
    assert (d.token_ids, d.stop_reason, d.text) == (dm.token_ids, dm.stop_reason, dm.text)
    (s,) = ops.extend([_req(ops, "Search", temperature=0.0, until=StepStop(NO_DELIM, 8, stop=(delim,)))])[0]
    assert s.stop_reason == "stop" and s.token_ids == d.token_ids and delim in s.text


def test_score_logprobs_verify_prob_and_embed_match_the_reference(ops_pm, memory_ref):
    ops, _, _ = ops_pm
    req = _req(ops, "Tree search with a cache", temperature=1.0, seed=4)
    (step,) = ops.extend([req])[0]
    ctx = list(req.branch.all_token_ids)
    got = ops.score_logprobs([(ctx, list(step.token_ids)), (ctx, [])])
    assert got[0] == pytest.approx(step.logprob, abs=2e-3) and got[1] == 0.0
    assert got[0] == pytest.approx(memory_ref.score_logprobs([(ctx, list(step.token_ids))])[0], abs=2e-3)
    vreqs = [VerifyRequest("Is 2 + 2 = 4? Answer:", yes=" Yes", no=" No"),
             VerifyRequest("def main():\n    return", yes=" x", no=None),
             VerifyRequest("def main():\n    return", yes=" None", no=" x")]
    v = ops.verify_prob(vreqs)
    assert all(0.0 <= p <= 1.0 for p in v)
    assert v == pytest.approx(memory_ref.verify_prob(vreqs), abs=1e-3)
    assert ops.embed(["a b c", "a b c d"]) == memory_ref.embed(["a b c", "a b c d"])


def test_every_strategy_runs_with_consistent_counters(ops_pm, engine_reused_tokens):
    ops, pm, rec = ops_pm
    names = pm.strategies.names()
    assert {"beam", "best_of_n", "self_consistency", "mcts", "ets", "particle_filter"} <= set(names)
    prompts, params = [], []
    for i, name in enumerate(names):
        prompts.append(SearchPrompt(text=f"Problem {i}: 3 + 4 = ?\nSolution:\n" + LONG_TEXT,
                                    reference="7", request_id=f"s-{name}"))
        params.append({"strategy": name, "width": 2, "max_steps": 2, "max_step_tokens": 6,
                       "max_total_tokens": 12, "step_delimiter": "\n", "seed": 5})
    reused0 = engine_reused_tokens()
    held0, t0 = ops.kv_stats().block_seconds, time.perf_counter()
    results = run_search(ops, prompts, params, pm=pm)
    assert [r.strategy for r in results] == names
    kv = ops.kv_stats()
    # the engine's blocks-in-use gauge, integrated over the run (#16's KV block-seconds): some
    # blocks were held, never more than the peak for the whole time
    assert 0 < kv.block_seconds - held0 <= kv.peak_blocks * (time.perf_counter() - t0)
    for r in results:
        c = r.counters
        rid = r.request_id
        created = set(rec.forked.get(rid, [])) | {rid}
        assert c.branches_created == len(created), rid
        assert set(rec.released.get(rid, [])) == created, f"{rid}: not every branch released"
        assert c.branches_released == c.branches_created
        assert c.tokens_generated > 0 and c.model_calls > 0 and c.engine_rounds > 0, rid
        assert c.tokens_computed >= c.tokens_generated, rid
        assert c.peak_kv_tokens <= c.peak_kv_tokens_unshared, rid
        assert c.engine_peak_kv_blocks == kv.peak_blocks > 0
        for cand in r.candidates:
            assert cand.branch_id in created
        if r.chosen_branch_id is not None:
            assert r.chosen_branch_id in created and r.text
    assert sum(r.counters.tokens_reused for r in results) <= kv.tokens_reused
    # searches sharing one prompt prefix across branches hit the engine's cache for real
    assert sum(r.counters.tokens_reused for r in results) > 0
    # and the engine's own counters (where it keeps them) saw at least that much reuse
    if reused0 is not None:
        assert engine_reused_tokens() - reused0 >= sum(r.counters.tokens_reused for r in results)


def test_greedy_search_results_do_not_depend_on_the_other_searches(ops_pm):
    ops, pm, _ = ops_pm
    alone = assert_search_independent_of_others(ops, pm, {"temperature": 0.0}, {"temperature": 0.8})
    assert alone.text
