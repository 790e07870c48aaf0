"""The ``prm`` scorer (ttc_plugins/scoring/prm.py) on the reference engine and reference PRM: a
beam search scored by the tiny PRM, whose step scores must be the PRM's own outputs."""

from __future__ import annotations

import pytest

from ttc_plugins.errors import TTCParamError
from ttc_plugins.manager import TTCPluginManager
from ttc_plugins.scoring.aggregate import aggregate
from ttc_plugins.scoring.prm import ProcessRewardScorer, prm_text
from ttc_plugins.search import run_search
from ttc_plugins.testing import PRM_STEP_TAG, build_tiny_llama, build_tiny_qwen2_prm
from ttc_plugins.testing.memory_engine import MemoryEngine
from ttc_plugins.testing.memory_prm import MemoryRewardModel

SEARCH = {"strategy": "beam", "width": 2, "expand": 2, "max_steps": 3, "max_step_tokens": 6,
          "step_delimiter": "\n", "seed": 3, "scorer": "prm", "aggregation": "min"}


@pytest.fixture(scope="module")
def prm():
    return MemoryRewardModel.from_pretrained(build_tiny_qwen2_prm(weights=True))


@pytest.fixture(scope="module")
def policy_dir():
    return build_tiny_llama()


def test_prm_text_closes_every_step_with_the_tag_and_drops_tags_inside_steps():
    assert prm_text("Q:\n", [" a = 1\n", f"b{PRM_STEP_TAG} = 2\n"], PRM_STEP_TAG) == \
        f"Q:\na = 1{PRM_STEP_TAG}b = 2{PRM_STEP_TAG}"


def test_prm_returns_one_probability_per_step_tag(prm):
    (rewards,) = prm.step_rewards([prm_text("Q: 2 + 3?\n", ["2 + 3 = 5", "so 5", "done"], prm.step_tag)])
    assert len(rewards) == 3 and all(0.0 < r < 1.0 for r in rewards)
    assert len(set(rewards)) == 3  # the random head separates steps


def test_a_missing_reward_model_is_a_param_error_before_any_engine_call(policy_dir):
    engine = MemoryEngine.from_pretrained(policy_dir)
    pm = TTCPluginManager(load_entrypoints=False)
    with pytest.raises(TTCParamError) as err:
        run_search(engine, ["Q:\n"], {**SEARCH, "scorer_args": {"model": "judge"}}, pm=pm)
    assert err.value.field == "ttc.search.scorer_args.model" and "'judge'" in err.value.message
    assert engine.calls["extend"] == 0


def test_beam_search_scored_by_the_prm_keeps_the_prms_own_step_scores(policy_dir, prm):
    engine = MemoryEngine.from_pretrained(policy_dir, reward_models={"prm": prm})
    pm = TTCPluginManager(load_entrypoints=False)
    assert pm.scorers.get("prm") is ProcessRewardScorer
    prompt = "Problem: 3 + 4 = ?\nSolution:\n"
    (res,) = run_search(engine, [prompt], SEARCH, pm=pm)
    assert res.chosen_branch_id is not None and len(res.chosen_path) == len(res.scores) >= 1
    (expected,) = prm.step_rewards([prm_text(prompt, res.chosen_path, prm.step_tag)])
    assert res.scores == pytest.approx(expected, abs=1e-6)
    assert res.path_score == pytest.approx(aggregate(expected, "min"))
    scored = [c for c in res.candidates if c.score is not None]
    assert res.path_score == max(c.score for c in scored)  # beam keeps the best path by min-aggregated PRM score


def test_a_reward_model_that_does_not_answer_is_unavailable_not_a_crash():
    """A PRM that is down or dies mid-search: the search fails with RewardModelUnavailable (a
    503 on both servers, ``search.serving.search_failure``), naming the model and the cause."""
    import asyncio

    from ttc_plugins.errors import RewardModelUnavailable
    from ttc_plugins.scoring.prm import step_rewards
    from ttc_plugins.search import serving as served

    class Down:
        step_tag = PRM_STEP_TAG

        async def astep_rewards(self, texts):
            raise ConnectionError("connection refused")

    class Engine:
        reward_models = {"prm": Down()}

    with pytest.raises(RewardModelUnavailable, match="'prm' is unavailable: ConnectionError: connection refused") as info:
        asyncio.run(step_rewards(Engine(), "prm", [("Q", ["a step"])]))
    status, err_type, message = served.search_failure(info.value)
    assert (int(status), err_type) == (503, "ServiceUnavailableError") and "connection refused" in message
    status, _, message = served.search_failure(RuntimeError("strategy bug"))
    assert int(status) == 500 and message == "search failed: RuntimeError: strategy bug"
