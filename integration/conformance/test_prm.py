"""The ``prm`` scorer on every engine. A process reward model the engine serves scores steps with
the HF forward's probabilities of the same tiny PRM weights (``MemoryRewardModel``), in process and
inside the engine's OpenAI server, where a search scored by it keeps the PRM's own step scores; a
search whose reward model does not answer gets a 503 naming it, and the server keeps serving."""

from __future__ import annotations

import openai
import pytest

from ttc_plugins.scoring.prm import QWEN_STEP_TAG, prm_text
from ttc_plugins.testing.memory_prm import MemoryRewardModel

PROMPT = "Problem: 3 + 4 = ?\nSolution:\n"
TEXTS = [prm_text(PROMPT, ["3 + 4 = 7", "so the answer is 7", "done"], QWEN_STEP_TAG),
         prm_text("Q:\n", ["one"], QWEN_STEP_TAG)]
SEARCH = {"strategy": "beam", "width": 2, "expand": 2, "max_steps": 3, "max_step_tokens": 6, "max_total_tokens": 18,
          "step_delimiter": "\n", "temperature": 1.0, "seed": 7, "scorer": "prm", "scorer_args": {"model": "prm"},
          "aggregation": "min"}


@pytest.fixture(scope="module")
def hf_prm(prm_dir) -> MemoryRewardModel:
    return MemoryRewardModel.from_pretrained(prm_dir)  # HF transformers on the same weights


def test_the_engines_prm_gives_the_hf_step_probabilities(engine_prm_rewards, hf_prm):
    step_tag, got = engine_prm_rewards(TEXTS)
    assert step_tag == hf_prm.step_tag == QWEN_STEP_TAG
    want = hf_prm.step_rewards(TEXTS)
    assert [len(r) for r in got] == [3, 1]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=1e-4)


def _search(engine_search_openai, search):
    client, model, extra_body = engine_search_openai
    resp = client.completions.create(model=model, prompt=PROMPT, extra_body=extra_body({"search": search}))
    return resp, resp.model_extra["ttc"]["search"]


def test_a_search_in_the_server_scored_by_the_prm_keeps_the_prms_own_step_scores(engine_search_openai, hf_prm):
    resp, rep = _search(engine_search_openai, SEARCH)
    assert resp.choices[0].text == rep["text"] and rep["chosen_branch_id"] is not None
    (expected,) = hf_prm.step_rewards([prm_text(PROMPT, rep["chosen_path"], hf_prm.step_tag)])
    assert len(expected) == len(rep["scores"]) >= 1
    assert rep["scores"] == pytest.approx(expected, abs=1e-4)
    assert rep["path_score"] == pytest.approx(min(expected), abs=1e-4)  # aggregation "min"
    scored = [c for c in rep["candidates"] if c["score"] is not None]
    assert rep["path_score"] == max(c["score"] for c in scored)


def test_a_search_whose_reward_model_is_down_is_a_503_naming_it(engine_search_openai, engine_down_reward_model):
    with pytest.raises(openai.APIStatusError) as info:
        _search(engine_search_openai, {**SEARCH, "scorer_args": {"model": engine_down_reward_model}})
    assert info.value.status_code == 503, str(info.value)
    assert f"reward model {engine_down_reward_model!r} is unavailable" in str(info.value)
    resp, rep = _search(engine_search_openai, {**SEARCH, "max_steps": 1})  # the server keeps serving
    assert rep["chosen_branch_id"] is not None
