"""vLLM-only behaviour of ``vllm_backend.search_ops.VLLMEngineOps`` (the shared behaviour, every
strategy included, is in ``integration/conformance/test_search_ops.py``): seeded batch
independence, block-granular prefix-cache reuse, EOS mapping, the chunked-prefill refusal.

They run on the suite's shared in-process engine (``eager_llm``: the tiny random Llama, eager,
chunked prefill off so per-request seeds are safe, stats on for the KV gauge).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("vllm")

from ttc_plugins.search import ExtendRequest, SamplingConfig, StepStop  # noqa: E402
from ttc_plugins.types import Branch, RequestContext  # noqa: E402
from ttc_plugins.vllm_backend.search_ops import VLLMEngineOps  # noqa: E402

from integration.common.search import CODE, NO_DELIM, assert_search_independent_of_others  # noqa: E402
from integration.common.search import step_request as _req  # noqa: E402

BLOCK = 128
LONG_TEXT = CODE * 6  # more than one full KV block


@pytest.fixture(scope="module")
def search_llm(eager_llm):
    """The suite's in-process engine: vLLM's distributed state is per process, so a second
    in-process engine would tear down the first one's when it is deleted."""
    return eager_llm


def _prefix_hits(llm) -> float:
    return sum(m.value for m in llm.get_metrics() if m.name == "vllm:prefix_cache_hits")


# -- vLLM-only -------------------------------------------------------------------------------
def test_seeded_continuations_do_not_depend_on_the_batch(ops_pm):
    ops, _, _ = ops_pm
    alone = ops.extend([_req(ops, "The answer is", bid="x", n=2, seed=3)])[0]
    batched = ops.extend([
        _req(ops, "Hello world", bid="y", n=3, seed=3),
        _req(ops, LONG_TEXT, bid="z", seed=3),
        _req(ops, "The answer is", bid="x", n=2, seed=3),
    ])[2]
    assert [s.token_ids for s in alone] == [s.token_ids for s in batched]
    assert [s.logprob for s in alone] == pytest.approx([s.logprob for s in batched], abs=1e-4)
    assert alone[0].token_ids != alone[1].token_ids  # two samples differ
    assert all(len(s.token_ids) == 8 and s.stop_reason == "length" and s.branch_id == "x" for s in alone)
    # the seed key, not the branch id, names the continuation: same key -> same tokens
    keyed_a = ops.extend([_req(ops, "The answer is", bid="p", seed=3, key="r.0@1")])[0][0]
    keyed_b = ops.extend([_req(ops, "The answer is", bid="q", seed=3, key="r.0@1")])[0][0]
    assert keyed_a.token_ids == keyed_b.token_ids


def test_eos_is_reported_and_kept(ops_pm, search_llm):
    """Map a real engine output that ended at EOS (forced with allowed_token_ids)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    ops, _, _ = ops_pm
    eos = ops.tokenizer.eos_token_id
    req = _req(ops, "Search", temperature=0.0)
    (o,) = search_llm.generate([TokensPrompt(prompt_token_ids=list(req.branch.all_token_ids))],
                               SamplingParams(max_tokens=5, temperature=0.0, logprobs=0, allowed_token_ids=[eos]),
                               use_tqdm=False)
    step = ops._to_step(req, o)
    assert step.stop_reason == "eos" and step.token_ids == (eos,) and step.text == ""


def test_forked_children_reuse_the_parents_full_blocks(ops_pm, search_llm):
    ops, pm, rec = ops_pm
    parent = _req(ops, LONG_TEXT, bid="parent", seed=11)
    plen = len(parent.branch.all_token_ids)
    assert plen > BLOCK + 10
    (first,) = ops.extend([parent])[0]
    # two children of the parent after its first step: prompt + step tokens
    child_prompt = parent.branch.all_token_ids + first.token_ids
    full_blocks = (len(child_prompt) - 1) // BLOCK * BLOCK
    children = [Branch(id=f"c{i}", parent_id="parent", prompt_token_ids=parent.branch.prompt_token_ids,
                       token_ids=first.token_ids) for i in range(2)]
    hits0 = _prefix_hits(search_llm)
    before = ops.kv_stats()
    steps = ops.extend([ExtendRequest(ctx=RequestContext("parent"), branch=c, until=StepStop(NO_DELIM, 6),
                                      sampling=SamplingConfig(0.8, seed=11), n=2) for c in children])
    reused = [s.tokens_reused for ss in steps for s in ss]
    assert all(r >= BLOCK for r in reused) and all(r % BLOCK == 0 for r in reused)
    assert all(r == full_blocks for r in reused)  # the parent's full blocks, never the partial tail
    after = ops.kv_stats()
    assert after.tokens_reused - before.tokens_reused == sum(reused)
    assert _prefix_hits(search_llm) - hits0 == sum(reused)  # the engine's own counter agrees
    assert after.peak_blocks >= -(-len(child_prompt) // BLOCK)
    # one ttc_kv_report per continuation with the same numbers
    last = rec.kv_reports[-4:]
    assert [st.tokens_reused for _, st in last] == reused
    assert all(st.tokens_computed == len(child_prompt) - st.tokens_reused + 6 for _, st in last)


def test_seeded_ops_refuse_a_chunked_prefill_engine():
    class FakeSched:
        enable_chunked_prefill = True

    class FakeCfg:
        scheduler_config = FakeSched()
        cache_config = None

    class FakeEngine:
        vllm_config = FakeCfg()

    class FakeLLM:
        llm_engine = FakeEngine()

        def get_tokenizer(self):
            return None

    with pytest.raises(ValueError, match="enable_chunked_prefill=False"):
        VLLMEngineOps(FakeLLM())


# -- strategies end to end ---------------------------------------------------------------------
def test_seeded_search_results_do_not_depend_on_the_other_searches(ops_pm):
    ops, pm, _ = ops_pm
    assert_search_independent_of_others(ops, pm, {"seed": 9}, {})
