"""The ``prm`` scorer on vLLM in Python (``vllm_backend.reward_model.VLLMRewardModel``): a process
reward model served by a second vLLM engine (pooling runner, ``token_classify`` at the step tag;
the ``engine_prm`` fixture) scores a beam search on the suite's policy engine through
``VLLMEngineOps``; its step scores must be the HF forward of the same tiny PRM weights. The PRM's
own probabilities and the server path: ``integration/conformance/test_prm.py``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("vllm")

from ttc_plugins.scoring.prm import prm_text  # noqa: E402
from ttc_plugins.search import SearchPrompt, run_search  # noqa: E402
from ttc_plugins.testing.memory_prm import MemoryRewardModel  # noqa: E402
from ttc_plugins.vllm_backend.search_ops import VLLMEngineOps  # noqa: E402

PROMPT = "Problem: 3 + 4 = ?\nSolution:\n"
SEARCH = {"strategy": "beam", "width": 2, "expand": 2, "max_steps": 3, "max_step_tokens": 6, "step_delimiter": "\n",
          "temperature": 1.0, "seed": 7, "scorer": "prm", "aggregation": "min"}


@pytest.fixture(scope="module")
def hf_prm(prm_dir) -> MemoryRewardModel:
    return MemoryRewardModel.from_pretrained(prm_dir)


def test_beam_search_scored_by_the_served_prm_keeps_the_prms_own_step_scores(eager_llm, engine_prm, hf_prm):
    ops = VLLMEngineOps(eager_llm, reward_models={"prm": engine_prm})
    (res,) = run_search(ops, [SearchPrompt(text=PROMPT, request_id="prm")], SEARCH)
    assert res.chosen_branch_id is not None and len(res.scores) == len(res.chosen_path) >= 1
    (expected,) = hf_prm.step_rewards([prm_text(PROMPT, res.chosen_path, hf_prm.step_tag)])
    assert res.scores == pytest.approx(expected, abs=1e-4)
    assert res.path_score == pytest.approx(min(expected), abs=1e-4)
    scored = [c for c in res.candidates if c.score is not None]
    assert res.path_score == max(c.score for c in scored) and len({round(c.score, 6) for c in scored}) > 1
    assert res.counters.model_calls > ops.sequences  # PRM calls are model calls too, on the other engine
