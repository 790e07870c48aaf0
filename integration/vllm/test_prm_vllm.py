"""The ``prm`` scorer on vLLM in Python (``vllm_backend.reward_model.VLLMRewardModel``): a process
reward model served by a second vLLM engine (pooling runner, ``token_classify`` at the step tag)
scores a beam search on the suite's policy engine; its step scores must be the HF forward of the same
tiny PRM weights.

The PRM engine runs multiprocess (its EngineCore in a child) beside the suite's in-process
``eager_llm``: two in-process engines would share one process's distributed state.
"""

from __future__ import annotations

import os

import pytest

pytest.importorskip("vllm")

from ttc_plugins.scoring.prm import prm_text  # noqa: E402
from ttc_plugins.search import SearchPrompt, run_search  # noqa: E402
from ttc_plugins.testing.memory_prm import MemoryRewardModel  # noqa: E402
from ttc_plugins.vllm_backend.reward_model import VLLMRewardModel, prm_engine_kwargs  # noqa: E402
from ttc_plugins.vllm_backend.search_ops import VLLMEngineOps  # noqa: E402

PROMPT = "Problem: 3 + 4 = ?\nSolution:\n"
SEARCH = {"strategy": "beam", "width": 2, "expand": 2, "max_steps": 3, "max_step_tokens": 6, "step_delimiter": "\n",
          "temperature": 1.0, "seed": 7, "scorer": "prm", "aggregation": "min"}


@pytest.fixture(scope="module")
def hf_prm(prm_dir) -> MemoryRewardModel:
    return MemoryRewardModel.from_pretrained(prm_dir)


@pytest.fixture(scope="module")
def prm(prm_dir):
    from vllm import LLM

    from vllm import envs

    before = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    # The suite's in-process engine froze vLLM's env cache at "0": without this the PRM engine
    # would run in this process too, and its shutdown tears down the distributed state (the
    # pipeline-parallel group) that the in-process engine still uses.
    envs.disable_envs_cache()
    try:
        llm = LLM(**prm_engine_kwargs(prm_dir, dtype="float32", max_model_len=1024, kv_cache_memory_bytes=64 * 2**20))
    finally:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = before if before is not None else "0"
    assert type(llm.llm_engine.engine_core).__name__ != "InprocClient", "the PRM engine must be a child process"
    yield VLLMRewardModel(llm)
    llm.llm_engine.engine_core.shutdown()  # now, while the session can still log


def test_served_prm_returns_the_hf_step_probabilities(prm, hf_prm):
    texts = [prm_text(PROMPT, ["3 + 4 = 7", "so the answer is 7"], prm.step_tag), prm_text("Q:\n", ["one"], prm.step_tag)]
    assert prm.step_tag == hf_prm.step_tag == "<extra_0>"
    got, want = prm.step_rewards(texts), hf_prm.step_rewards(texts)
    assert [len(r) for r in got] == [2, 1]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=1e-4)


def test_beam_search_scored_by_the_served_prm_keeps_the_prms_own_step_scores(eager_llm, prm, hf_prm):
    ops = VLLMEngineOps(eager_llm, reward_models={"prm": prm})
    (res,) = run_search(ops, [SearchPrompt(text=PROMPT, request_id="prm")], SEARCH)
    assert res.chosen_branch_id is not None and len(res.scores) == len(res.chosen_path) >= 1
    (expected,) = hf_prm.step_rewards([prm_text(PROMPT, res.chosen_path, hf_prm.step_tag)])
    assert res.scores == pytest.approx(expected, abs=1e-4)
    assert res.path_score == pytest.approx(min(expected), abs=1e-4)
    scored = [c for c in res.candidates if c.score is not None]
    assert res.path_score == max(c.score for c in scored) and len({round(c.score, 6) for c in scored}) > 1
    assert res.counters.model_calls > ops.sequences  # PRM calls are model calls too, on the other engine
