"""HFEngineOps, the in-process transformers engine (``ttc run --engine hf``, the reference the engine
backends are compared with): real tokens, real prefix-cache reuse, and every strategy on it."""

from __future__ import annotations

import pytest
from search_support import build_pm

from ttc_plugins.search import ExtendRequest, SamplingConfig, SearchPrompt, StepStop, VerifyRequest, run_search
from ttc_plugins.search.hf_ops import HFEngineOps
from ttc_plugins.testing import build_tiny_llama
from ttc_plugins.types import Branch, RequestContext

ALL = ["best_of_n", "weighted_best_of_n", "self_consistency", "beam", "dvts", "rebase", "ets", "mcts", "astar",
       "particle_filter", "first_finish"]


@pytest.fixture(scope="module")
def model_path():
    return build_tiny_llama()


@pytest.fixture
def engine(model_path):
    return HFEngineOps.from_pretrained(model_path)


def _req(engine, text, *, bid="b", n=1, temperature=0.8, seed=0, until=None):
    b = Branch(id=bid, parent_id=None, prompt_token_ids=tuple(engine.encode(text)))
    return ExtendRequest(ctx=RequestContext(bid), branch=b, until=until or StepStop("\n\n", 8),
                         sampling=SamplingConfig(temperature=temperature, seed=seed), n=n)


def test_continuations_are_seeded_and_independent_of_the_batch(engine, model_path):
    alone = engine.extend([_req(engine, "The answer is", bid="x", n=2)])[0]
    other = HFEngineOps.from_pretrained(model_path)
    batched = other.extend([_req(other, "Hello world", bid="y"), _req(other, "The answer is", bid="x", n=2)])[1]
    assert [s.token_ids for s in alone] == [s.token_ids for s in batched]
    assert alone[0].token_ids != alone[1].token_ids  # two samples differ
    assert all(len(s.token_ids) == 8 and s.stop_reason == "length" for s in alone)


def test_prefix_cache_reuse_is_counted(engine):
    prompt_len = len(engine.encode("A fairly long prompt about search trees and cache"))
    first, second = engine.extend([_req(engine, "A fairly long prompt about search trees and cache", n=2)])[0]
    assert first.tokens_reused == 0 and second.tokens_reused == prompt_len - 1
    kv = engine.kv_stats()
    assert kv.tokens_reused == prompt_len - 1 and kv.peak_blocks >= 1
    assert kv.tokens_computed == prompt_len + 1 + 2 * (8 - 1)  # prompt, +1 recomputed, decode steps


def test_stops_at_the_delimiter(engine):
    (greedy,) = engine.extend([_req(engine, "Search", temperature=0.0)])[0]
    delim = engine.tokenizer.decode(greedy.token_ids[2:3])
    (stopped,) = engine.extend([_req(engine, "Search", temperature=0.0, until=StepStop(delim, 8))])[0]
    assert stopped.stop_reason == "delimiter" and delim in stopped.text
    assert stopped.token_ids == greedy.token_ids[: len(stopped.token_ids)] and len(stopped.token_ids) <= 3


def test_step_logprob_matches_score_logprobs(engine):
    req = _req(engine, "Tree search with a cache", temperature=1.0, seed=4)
    (step,) = engine.extend([req])[0]
    (lp,) = engine.score_logprobs([(req.branch.all_token_ids, step.token_ids)])
    assert lp == pytest.approx(step.logprob, abs=1e-3)


def test_verify_prob_is_a_probability(engine):
    p = engine.verify_prob([VerifyRequest("Is 2 + 2 = 4? Answer:"), VerifyRequest("Is 2 + 2 = 5? Answer:", no=None)])
    assert 0.0 < p[0] < 1.0 and 0.0 < p[1] < 1.0 and p[0] != p[1]


def test_every_strategy_runs_concurrently_on_the_hf_engine(engine):
    pm, rec = build_pm()
    engine.pm = pm  # the engine reports KV per continuation through ttc_kv_report
    params = [{"strategy": s, "width": 2, "max_steps": 2, "max_step_tokens": 4, "temperature": 1.0, "seed": 1,
               "step_delimiter": "\n", **({"expand": 2} if s in ("beam", "dvts", "mcts", "astar") else {}),
               **({"iterations": 3} if s == "mcts" else {}), **({"token_budget": 24} if s == "astar" else {})}
              for s in ALL]
    prompts = [SearchPrompt("Solve: 3 + 4 = ", reference="7", request_id=f"p-{s}") for s in ALL]
    results = run_search(engine, prompts, params, pm=pm)
    assert [r.strategy for r in results] == ALL
    for r in results:
        assert r.chosen_branch_id is not None and r.text and r.chosen_path, r.strategy
        assert "".join(r.chosen_path) == r.text
        c = r.counters
        assert c.tokens_generated > 0 and c.model_calls > 0 and c.engine_rounds > 0
        assert c.tokens_reused > 0, r.strategy  # children re-use their parent's prefix
        assert c.engine_peak_kv_blocks > 0 and c.retained_nodes_peak > 0
    assert set(rec.released) == {r.request_id for r in results} | set(rec.forked)
    # all searches shared rounds: far fewer engine calls than the sum of their rounds
    assert engine.calls["extend"] < sum(r.counters.engine_rounds for r in results)

