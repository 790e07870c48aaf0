"""EngineOps over a real SGLang engine (``sglang_backend.search_ops.SGLangEngineOps``): conformance
with the reference MemoryEngine, real radix-cache reuse, and every registered strategy end to end.

They run on the suite's ONE in-process engine (``engine``: tiny random Llama, float32,
torch_native attention). SGLang honours per-request ``sampling_seed`` only with
``enable_deterministic_inference``, which it refuses for torch_native (CPU), so the ops run with
``seeded=False`` here: batch independence is checked on greedy steps, and the seed derivation on
the sampling parameters the ops send.
"""

from __future__ import annotations

import pytest

pytest.importorskip("sglang")

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
from ttc_plugins.sglang_backend.search_ops import SGLangEngineOps, sampling_params  # noqa: E402
from ttc_plugins.testing.memory_engine import MemoryEngine, continuation_seed  # noqa: E402
from ttc_plugins.types import Branch, RequestContext  # noqa: E402

LONG_TEXT = ("def search(tree, key):\n    node = tree.root\n    while node is not None:\n"
             "        if key < node.key:\n            node = node.left\n        else:\n"
             "            node = node.right\n    return node\n") * 3
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
def memory_ref(tiny_model):
    return MemoryEngine.from_pretrained(tiny_model)


@pytest.fixture
def ops_pm(engine):
    pm = TTCPluginManager(load_entrypoints=False)
    rec = Recorder()
    pm.register(rec, name="recorder")
    return SGLangEngineOps(engine, pm=pm, seeded=False), pm, rec


def _req(ops, text, *, bid="b", n=1, temperature=0.8, seed=0, until=None, key=""):
    b = Branch(id=bid, parent_id=None, prompt_token_ids=tuple(ops.encode(text)))
    return ExtendRequest(ctx=RequestContext(bid), branch=b, until=until or StepStop(NO_DELIM, 8),
                         sampling=SamplingConfig(temperature=temperature, seed=seed), n=n, seed_key=key)


# -- conformance -------------------------------------------------------------------------------
def test_seeded_ops_refuse_an_engine_that_ignores_sampling_seed(engine):
    assert engine.server_args.enable_deterministic_inference is False
    with pytest.raises(ValueError, match="enable_deterministic_inference=True"):
        SGLangEngineOps(engine)


def test_continuations_carry_the_shared_seed_derivation(ops_pm):
    ops, _, _ = ops_pm
    req = _req(ops, "The answer is", bid="x", n=3, seed=3, key="r.0@1",
               until=StepStop("\n", 5, stop=("END", "\n")))
    sps = [sampling_params(req, i, seeded=True) for i in range(req.n)]
    assert [sp["sampling_seed"] for sp in sps] == [continuation_seed(3, "r.0@1", i) for i in range(3)]
    assert len({sp["sampling_seed"] for sp in sps}) == 3
    assert sps[0]["stop"] == ["END", "\n"] and sps[0]["no_stop_trim"] is True and sps[0]["max_new_tokens"] == 5
    greedy = _req(ops, "x", temperature=0.0)
    assert "sampling_seed" not in sampling_params(greedy, 0, seeded=True)
    assert "sampling_seed" not in sampling_params(req, 0, seeded=False)


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


def test_stop_reasons_delimiter_stop_length_and_eos(ops_pm, memory_ref, engine):
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
    # EOS: a real engine output forced to EOS with the backend's force_token decoder
    eos = ops.tokenizer.eos_token_id
    req = _req(ops, "Search", temperature=0.0)
    o = engine.generate(input_ids=list(req.branch.all_token_ids), return_logprob=True,
                        sampling_params={"max_new_tokens": 5, "temperature": 0.0,
                                         "custom_params": {"ttc": {"decoding": [{"name": "force_token",
                                                                                 "token_id": eos}]}}})
    step = ops._to_step(req, o)
    assert step.stop_reason == "eos" and step.token_ids == (eos,) and step.text == ""


def test_forked_children_reuse_the_parents_prefix(ops_pm):
    ops, pm, rec = ops_pm
    parent = _req(ops, LONG_TEXT + "# forked", bid="parent", temperature=1.0)
    (first,) = ops.extend([parent])[0]
    child_prompt = parent.branch.all_token_ids + first.token_ids
    children = [Branch(id=f"c{i}", parent_id="parent", prompt_token_ids=parent.branch.prompt_token_ids,
                       token_ids=first.token_ids) for i in range(2)]
    before = ops.kv_stats()
    n_reports = len(rec.kv_reports)
    steps = ops.extend([ExtendRequest(ctx=RequestContext("parent"), branch=c, until=StepStop(NO_DELIM, 6),
                                      sampling=SamplingConfig(1.0), n=2) for c in children])
    reused = [s.tokens_reused for ss in steps for s in ss]
    # the radix tree holds the parent's prompt and every step token it fed back (all but the last)
    assert all(len(parent.branch.all_token_ids) <= r <= len(child_prompt) - 1 for r in reused), reused
    after = ops.kv_stats()
    assert after.tokens_reused - before.tokens_reused == sum(reused)
    assert after.tokens_computed - before.tokens_computed == sum(len(child_prompt) - r + 6 for r in reused)
    assert after.peak_blocks >= len(child_prompt) and ops.kv_samples > 0
    # one ttc_kv_report per continuation with the same numbers
    last = rec.kv_reports[n_reports:]
    assert [st.tokens_reused for _, st in last] == reused
    assert all(st.tokens_computed == len(child_prompt) - st.tokens_reused + 6 for _, st in last)


def test_score_logprobs_and_verify_prob_match_the_reference(ops_pm, memory_ref):
    ops, _, _ = ops_pm
    for temperature in (1.0, 0.7):  # engine logprobs (raw at T=1); re-scored otherwise
        rescored = ops.rescored
        req = _req(ops, "Tree search with a cache", temperature=temperature)
        (step,) = ops.extend([req])[0]
        assert ops.rescored == rescored + (temperature != 1.0)
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


# -- strategies end to end ---------------------------------------------------------------------
def test_every_strategy_runs_on_sglang_with_consistent_counters(ops_pm):
    ops, pm, rec = ops_pm
    names = pm.strategies.names()
    assert {"beam", "best_of_n", "self_consistency", "mcts", "ets", "particle_filter"} <= set(names)
    prompts, params = [], []
    for i, name in enumerate(names):
        prompts.append(SearchPrompt(text=f"Problem {i}: 3 + 4 = ?\nSolution:\n" + LONG_TEXT,
                                    reference="7", request_id=f"s-{name}"))
        params.append({"strategy": name, "width": 2, "max_steps": 2, "max_step_tokens": 6,
                       "max_total_tokens": 12, "step_delimiter": "\n", "seed": 5})
    calls = ops.engine_calls
    results = run_search(ops, prompts, params, pm=pm)
    assert [r.strategy for r in results] == names
    assert ops.engine_calls > calls
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
            assert cand.branch_id in created
        if r.chosen_branch_id is not None:
            assert r.chosen_branch_id in created and r.text
    assert sum(r.counters.tokens_reused for r in results) <= kv.tokens_reused
    # searches sharing one prompt prefix across branches hit the radix cache for real
    assert sum(r.counters.tokens_reused for r in results) > 0


def test_greedy_search_results_do_not_depend_on_the_other_searches(ops_pm):
    ops, pm, _ = ops_pm
    p = {"strategy": "beam", "width": 2, "max_steps": 2, "max_step_tokens": 6, "max_total_tokens": 12,
         "step_delimiter": "\n", "temperature": 0.0}
    target = SearchPrompt(text="Problem: 5 + 3 = ?\nSolution:\n", request_id="target")
    (alone,) = run_search(ops, [target], p, pm=pm)
    other = SearchPrompt(text="Problem: 9 * 9 = ?\nSolution:\n", request_id="other")
    together = run_search(ops, [other, target], [{**p, "strategy": "best_of_n", "temperature": 0.8}, p], pm=pm)[1]
    assert alone.text == together.text and alone.chosen_path == together.chosen_path
    assert alone.text
