"""Helpers of the search-operation tests, every engine's: a hook recorder and step requests."""

from __future__ import annotations

from ttc_plugins import hookimpl
from ttc_plugins.search import ExtendRequest, SamplingConfig, StepStop
from ttc_plugins.types import Branch, RequestContext

CODE = ("def search(tree, key):\n    node = tree.root\n    while node is not None:\n"
        "        if key < node.key:\n            node = node.left\n        else:\n"
        "            node = node.right\n    return node\n")
LONG_TEXT = CODE * 3
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


def step_request(ops, text, *, bid="b", n=1, temperature=0.8, seed=0, until=None, key="") -> ExtendRequest:
    """One step of a root branch on ``text`` (8 tokens, no delimiter, unless ``until`` says)."""
    b = Branch(id=bid, parent_id=None, prompt_token_ids=tuple(ops.encode(text)))
    return ExtendRequest(ctx=RequestContext(bid), branch=b, until=until or StepStop(NO_DELIM, 8),
                         sampling=SamplingConfig(temperature=temperature, seed=seed), n=n, seed_key=key)


def recorded_ops(make_ops):
    """(ops, plugin manager, :class:`Recorder`): the engine's ops over a fresh manager that records
    the search hooks (``make_ops`` is the engine's ``engine_ops`` fixture)."""
    from ttc_plugins.manager import TTCPluginManager

    pm = TTCPluginManager(load_entrypoints=False)
    rec = Recorder()
    pm.register(rec, name="recorder")
    return make_ops(pm), pm, rec


def assert_search_independent_of_others(ops, pm, sampling: dict, other_sampling: dict):
    """A beam search gives the same result alone and sharing its rounds with another search (a
    best-of-n with ``other_sampling``); returns the lone result."""
    from ttc_plugins.search import SearchPrompt, run_search

    p = {"strategy": "beam", "width": 2, "max_steps": 2, "max_step_tokens": 6, "max_total_tokens": 12,
         "step_delimiter": "\n", **sampling}
    target = SearchPrompt(text="Problem: 5 + 3 = ?\nSolution:\n", request_id="target")
    (alone,) = run_search(ops, [target], p, pm=pm)
    other = SearchPrompt(text="Problem: 9 * 9 = ?\nSolution:\n", request_id="other")
    together = run_search(ops, [other, target], [{**p, "strategy": "best_of_n", **other_sampling}, p], pm=pm)[1]
    assert alone.text == together.text and alone.chosen_path == together.chosen_path
    return alone
