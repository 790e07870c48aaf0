"""Behavioural tests of every strategy on scripted worlds (environment doubles)."""

from __future__ import annotations

from collections import Counter

import pytest

from ttc_plugins.errors import TTCParamError
from ttc_plugins.scoring.step_checker import check_equations
from ttc_plugins.scoring.verifiers import extract_answer
from ttc_plugins.search import SearchPrompt, run_search
from ttc_plugins.search.sampling import normalize_answer
from ttc_plugins.testing.scripted_engine import ScriptedEngine

from search_support import PROMPT, build_pm, bushy_world, trap_world

PRM = {"scorer": "arith_steps", "aggregation": "min", "step_delimiter": "\n"}
ALL = ["best_of_n", "weighted_best_of_n", "self_consistency", "beam", "dvts", "rebase", "ets", "mcts", "astar",
       "particle_filter", "first_finish"]


def _run(strategy, world=None, prompt=PROMPT, reference="16", **kw):
    pm, rec = build_pm()
    engine = ScriptedEngine(world or trap_world())
    params = {"strategy": strategy, **PRM, **kw}
    (res,) = run_search(engine, [SearchPrompt(prompt, reference=reference, request_id="q")], params, pm=pm)
    return res, rec, engine


def test_greedy_misses_the_only_correct_path():
    res, _, _ = _run("best_of_n", width=1, temperature=0.0)
    assert res.answer == "18"


@pytest.mark.parametrize("strategy", ["beam", "rebase", "ets", "dvts", "mcts", "astar", "particle_filter"])
def test_process_scorer_guided_search_finds_the_correct_chain(strategy):
    extra = {"expand": 2} if strategy in ("beam", "dvts", "mcts", "astar") else {}
    if strategy == "particle_filter":
        extra = {"resample_temperature": 0.1}
    res, _, _ = _run(strategy, width=8, temperature=1.0, seed=3, **extra)
    assert res.answer == "16", (strategy, res.chosen_path)
    assert res.chosen_path == ["5 + 3 = 8\n", "8 * 2 = 16\n", "The answer is 16.\n"]
    assert res.path_score == 1.0


def test_outcome_verifier_best_of_n_finds_it_and_greedy_does_not():
    res, _, _ = _run("best_of_n", width=24, temperature=1.0, scorer="integer_answer", aggregation="last")
    assert res.answer == "16" and res.path_score == 1.0
    greedy, _, _ = _run("best_of_n", width=1, temperature=0.0, scorer="integer_answer", aggregation="last")
    assert greedy.answer != "16" and greedy.path_score == 0.0


def test_self_consistency_returns_the_majority():
    world = {"": [("The answer is 7.\n", 0.45), ("The answer is 8.\n", 0.35), ("The answer is 9.\n", 0.2)]}
    res, _, _ = _run("self_consistency", world=world, width=15, temperature=1.0, seed=1)
    tally = Counter(normalize_answer(extract_answer(c.text)) for c in res.candidates)
    assert len(res.candidates) == 15 and len(tally) > 1  # a real vote, not a unanimous one
    assert res.answer == tally.most_common(1)[0][0]
    assert res.info["tally"][res.answer] == max(res.info["tally"].values())


def test_weighted_best_of_n_prefers_the_best_supported_answer():
    # most samples end in 18 or 20 after a wrong step (scored 0 by the step checker); 16 alone scores 1
    res, _, _ = _run("weighted_best_of_n", width=24, temperature=1.0)
    tally = res.info["tally"]
    counts = Counter(normalize_answer(extract_answer(c.text)) for c in res.candidates)
    assert counts["16"] < max(counts.values())  # plain majority would not pick 16
    assert res.answer == max(tally, key=tally.get)
    assert res.answer == "16"


def test_first_finish_returns_the_first_finished_branch_and_stops():
    world = {
        "": [("Let me think.\n", 0.5), ("Quick: 2 + 2 = 4\n", 0.5)],
        "Let me think.\n": [("Still thinking.\n", 1.0)],
        "Let me think.\nStill thinking.\n": [("The answer is 5.\n", 1.0)],
        "Quick: 2 + 2 = 4\n": [("The answer is 4.\n", 1.0)],
    }
    res, rec, engine = _run("first_finish", world=world, width=6, temperature=1.0, seed=0, reference="4")
    assert res.answer == "4"
    assert res.chosen_path == ["Quick: 2 + 2 = 4\n", "The answer is 4.\n"]
    assert res.info["rounds"] == 2 and engine.calls["extend"] == 2  # the slow paths never ran a 3rd round
    sc, _, sc_engine = _run("self_consistency", world=world, width=6, temperature=1.0, seed=0, reference="4")
    assert sc_engine.calls["extend"] == 3 and sc.counters.tokens_generated > res.counters.tokens_generated


def test_ets_retains_fewer_nodes_than_rebase_at_the_same_width():
    common = dict(width=8, temperature=1.0, seed=5)
    rebase, _, _ = _run("rebase", world=bushy_world(), reference="16", **common)
    ets, _, _ = _run("ets", world=bushy_world(), reference="16", **common)
    assert rebase.answer == ets.answer == "16"
    assert ets.counters.retained_nodes_sum < rebase.counters.retained_nodes_sum
    assert ets.counters.peak_kv_tokens <= rebase.counters.peak_kv_tokens
    assert ets.counters.retained_nodes_peak <= rebase.counters.retained_nodes_peak


@pytest.mark.parametrize("strategy", ALL)
def test_every_branch_is_forked_by_hook_and_released_exactly_once(strategy):
    extra = {"expand": 2} if strategy in ("beam", "dvts", "mcts", "astar") else {}
    res, rec, _ = _run(strategy, world=bushy_world(2), reference="8", width=4, temperature=1.0, **extra)
    created = {"q", *rec.forked}
    assert len(rec.forked) == res.counters.branches_created - 1 > 0
    assert sorted(rec.released) == sorted(set(rec.released)), "a branch was released twice"
    assert set(rec.released) == created, "a branch was left unreleased (or an unknown one released)"
    c = res.counters
    if strategy == "ets":  # ETS also embeds the leaves' steps
        assert c.model_calls > rec.step_boundaries > 0
    else:  # one continuation per step boundary; the step checker makes no engine call
        assert c.model_calls == rec.step_boundaries > 0
    assert rec.finished == ["q"]
    assert c.tokens_generated > 0 and c.tokens_reused > 0 and c.engine_rounds > 0
    assert c.tokens_computed >= c.tokens_generated
    assert res.wall_time_s > 0 and c.peak_kv_tokens > 0 and c.retained_nodes_peak > 0


def test_concurrent_searches_share_engine_rounds_and_match_solo_runs():
    strategies = ["beam", "rebase", "particle_filter", "self_consistency"]
    params = [{"strategy": s, **PRM, "width": 4, "temperature": 1.0, **({"expand": 2} if s == "beam" else {})}
              for s in strategies]
    prompts = [SearchPrompt(PROMPT, reference="16", request_id=f"q{i}") for i in range(len(strategies))]
    pm, _ = build_pm()
    engine = ScriptedEngine(trap_world())
    together = run_search(engine, prompts, params, pm=pm)
    solo_rounds = []
    for p, prm in zip(prompts, params):
        pm2, _ = build_pm()
        e2 = ScriptedEngine(trap_world())
        (solo,) = run_search(e2, [p], prm, pm=pm2)
        solo_rounds.append(e2.calls["extend"])
        t = together[prompts.index(p)]
        assert (t.answer, t.chosen_path, t.scores) == (solo.answer, solo.chosen_path, solo.scores)
    assert engine.calls["extend"] == max(solo_rounds) < sum(solo_rounds)


def test_kv_budget_evicts_through_the_hook():
    res, rec, _ = _run("rebase", world=bushy_world(), reference="16", width=8, temperature=1.0, kv_budget_tokens=60)
    assert rec.evict_calls > 0 and res.counters.branches_evicted > 0
    assert set(rec.released) == {"q", *rec.forked}


@pytest.mark.parametrize(
    "params, field",
    [
        ({"strategy": "beam", "width": 0}, "ttc.search.width"),
        ({"strategy": "beam", "scorer": "no_such_scorer"}, "ttc.search.scorer"),
        ({"strategy": "beam", "widht": 3}, "ttc.search.widht"),
        ({"strategy": "ets", "kv_weight": -1}, "ttc.search.kv_weight"),
        ({"strategy": "beam", "scorer": "self_eval", "scorer_args": {"template": "no path"}},
         "ttc.search.scorer_args.template"),
        ({"strategy": "beam", "scorer": "arith_steps", "scorer_args": {"bogus": 1}}, "ttc.search.scorer_args.bogus"),
        ({"strategy": "nope"}, "ttc.search.strategy"),
    ],
)
def test_bad_params_raise_naming_the_field(params, field):
    pm, _ = build_pm()
    engine = ScriptedEngine(trap_world())
    with pytest.raises(TTCParamError) as info:
        run_search(engine, [PROMPT], params, pm=pm)
    assert info.value.field == field
    assert engine.calls["extend"] == 0


def test_self_eval_scorer_is_batched_across_searches():
    pm, _ = build_pm()
    def verifier(prompt: str) -> float:  # a judge that sees the verification prompt and checks its last step
        last = prompt.split("\n\nQuestion:")[0].rstrip("\n").split("\n")[-1]
        return 0.9 if all(ok for _, ok in check_equations(last)) else 0.1

    engine = ScriptedEngine(trap_world(), verifier=verifier)
    params = [{"strategy": "beam", "scorer": "self_eval", "aggregation": "min", "step_delimiter": "\n", "width": 8,
               "expand": 2, "temperature": 1.0, "seed": i} for i in range(3)]
    prompts = [SearchPrompt(PROMPT, request_id=f"s{i}") for i in range(3)]
    res = run_search(engine, prompts, params, pm=pm)
    assert engine.calls["verify_prob"] == engine.calls["extend"]  # one verify call per round for all 3 searches
    for p, prm, r in zip(prompts, params, res):  # and the same results as each search alone
        pm2, _ = build_pm()
        (solo,) = run_search(ScriptedEngine(trap_world(), verifier=verifier), [p], prm, pm=pm2)
        assert (solo.answer, solo.scores) == (r.answer, r.scores)
    found = [r for r in res if r.answer == "16"]
    assert found and all(r.scores == [0.9, 0.9, 0.9] for r in found)
    assert all(r.path_score == 0.9 for r in found) and all(r.path_score == 0.1 for r in res if r not in found)


def test_kv_counters_sum_the_retained_tree_per_round_without_the_prompt():
    # greedy: one path, three rounds; round r holds the prompt plus steps 1..r
    res, _, engine = _run("best_of_n", width=1, temperature=0.0)
    steps = [len(engine._tok(t)) for t in res.chosen_path]
    c = res.counters
    assert c.kv_rounds == len(steps) == 3
    assert c.kv_tokens_sum == sum(sum(steps[: r + 1]) for r in range(3))
    assert c.peak_kv_tokens == len(engine.encode(PROMPT)) + sum(steps)
    assert c.kv_tokens_avg == c.kv_tokens_sum / 3


@pytest.mark.parametrize("strategy", ALL)
def test_every_strategy_keeps_within_its_token_budget(strategy):
    """``token_budget`` caps a search's generated tokens whatever the strategy (matched-budget
    benchmarks rely on it): at most one token per branch of the last round over it."""
    width = 4
    res, _, _ = _run(strategy, world=bushy_world(), width=width, temperature=1.0, token_budget=12)
    unbounded, _, _ = _run(strategy, world=bushy_world(), width=width, temperature=1.0)
    assert res.counters.tokens_generated <= 12 + 4 * width
    assert res.counters.tokens_generated <= unbounded.counters.tokens_generated
