"""The strategy base class and the per-search state strategies drive.

A strategy is a generator: it ``yield``s engine operations (:class:`ExtendOp`, :class:`ScoreOp`,
:class:`EmbedOp`) and receives their results, so it never touches an engine and the driver can
batch the operations of every concurrent search into one engine call each. The helpers on
:class:`SearchState` (``fork``, ``release``, ``extend``, ``score``, ``embed``) do the
bookkeeping: fork and release go through the ``ttc_fork_branch`` / ``ttc_release_branches``
hooks, every applied step fires ``ttc_step_boundary``, evictions ask
``ttc_select_evictions``, and the counters of :class:`~ttc_plugins.search.result.SearchCounters`
are kept here.

Write a strategy::

    class Greedyish(SearchStrategy):
        name = "greedyish"
        Params = SearchParams

        def run(self, s):
            (b,) = s.fork(s.root, 1)
            while not b.finished:
                (b,) = yield from s.extend([b])
            return Selection(chosen=b, candidates=[b])
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generator, Sequence

from ..kv import held
from ..types import Branch, RequestContext, Score, Step
from .engine import ExtendRequest
from .params import SearchParams
from .result import SearchCounters

if TYPE_CHECKING:  # pragma: no cover
    from ..embedding import Embedder
    from ..manager import TTCPluginManager
    from ..scoring.base import Scorer

__all__ = [
    "EmbedOp",
    "ExtendOp",
    "ScoreOp",
    "SearchState",
    "SearchStrategy",
    "Selection",
    "allocate",
    "softmax",
]


# --- operations a strategy yields -------------------------------------------------------------
@dataclass
class ExtendOp:
    state: "SearchState"
    requests: list[ExtendRequest]


@dataclass
class ScoreOp:
    state: "SearchState"
    branches: list[Branch]


@dataclass
class EmbedOp:
    """Embed ``texts`` with ``embedder`` (a registered embedder's instance, run by the driver in
    the search's process), or with the engine's ``embed`` call when it is None."""

    state: "SearchState"
    texts: list[str]
    embedder: "Embedder | None" = None


Op = ExtendOp | ScoreOp | EmbedOp


@dataclass
class Selection:
    """What a strategy returns: the chosen branch (None when nothing was produced), the
    candidates it considered, optionally an answer differing from the chosen branch's own (a
    vote), and free-form info for the report."""

    chosen: Branch | None
    candidates: list[Branch] = field(default_factory=list)
    answer: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


class SearchStrategy:
    """Base class of search strategies. Subclasses set ``name``, ``Params`` (a
    :class:`SearchParams` subclass) and ``default_scorer``, and implement :meth:`run`."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[SearchParams]] = SearchParams
    default_scorer: ClassVar[str | None] = "logprob"

    def __init__(self, params: SearchParams):
        self.params = params

    @classmethod
    def check(cls, params: SearchParams, pm: "TTCPluginManager") -> None:
        """Checks of ``params`` that need the plugin manager (names of other registered
        components), run before any engine call; raise :class:`~ttc_plugins.errors.TTCParamError`
        naming the field. Nothing to check by default."""

    def run(self, s: "SearchState") -> Generator[Op, Any, Selection]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield


# --- helpers ---------------------------------------------------------------------------------
def softmax(values: Sequence[float], temperature: float = 1.0) -> list[float]:
    if not values:
        return []
    t = max(float(temperature), 1e-6)
    m = max(values)
    ex = [math.exp((v - m) / t) for v in values]
    z = sum(ex)
    return [e / z for e in ex]


def allocate(weights: Sequence[float], budget: int) -> list[int]:
    """Split ``budget`` integer units in proportion to ``weights`` (largest remainder; ties go to
    the earlier index). Sums to ``budget`` exactly."""
    if budget <= 0 or not weights:
        return [0] * len(weights)
    total = sum(weights)
    if total <= 0:
        weights = [1.0] * len(weights)
        total = float(len(weights))
    raw = [w / total * budget for w in weights]
    out = [int(math.floor(r)) for r in raw]
    rest = budget - sum(out)
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - out[i]), i))
    for i in order[:rest]:
        out[i] += 1
    return out


def node_keys(branch: Branch) -> list[tuple[str, int]]:
    """The search-tree nodes on ``branch``'s path: one per step, named by the branch that
    generated it and its depth (children copy their parent's steps, so shared prefixes share
    keys)."""
    return [(st.branch_id, i) for i, st in enumerate(branch.steps)]


def _seed_for(seed: int, request_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{request_id}".encode()).digest()[:8], "little")


FINISH_REASONS_NATURAL = ("eos", "stop", "answer")


class SearchState:
    """One search's bookkeeping (created by the driver; strategies call its helpers)."""

    def __init__(
        self,
        *,
        pm: "TTCPluginManager",
        ctx: RequestContext,
        params: SearchParams,
        root: Branch,
        prompt: str,
        scorer: "Scorer | None",
    ):
        self.pm = pm
        self.ctx = ctx
        self.params = params
        self.root = root
        self.prompt = prompt
        # no reference answer here: strategies never see it; the driver hands it to oracle
        # scorers only (scoring.base.OracleItem)
        self.scorer = scorer
        self.counters = SearchCounters(branches_created=1)
        self.rng = random.Random(_seed_for(params.seed, ctx.request_id))
        self.created: dict[str, Branch] = {root.id: root}
        # stable per-search names of tree positions (branch ids may come from a process-wide
        # counter); they seed the engine's sampling, so results do not depend on other searches
        self.tree_keys: dict[str, str] = {root.id: "r"}
        self._child_count: dict[str, int] = {}
        self.released: set[str] = set()
        self._until = params.step_stop()
        self._sampling = params.sampling()

    # -- tree ops (through the hooks) -------------------------------------------------------
    def fork(self, parent: Branch, k: int, *, release_parent: bool = True) -> list[Branch]:
        """``k`` children of ``parent`` from the ``ttc_fork_branch`` hook. The parent is released
        (it will not be extended again) unless ``release_parent`` is False."""
        children = self.pm.hook.ttc_fork_branch(ctx=self.ctx, parent=parent, k=k)
        if children is None or len(children) != k:
            raise RuntimeError(f"ttc_fork_branch returned {children!r} for k={k}; expected {k} branches")
        pkey = self.tree_keys.get(parent.id, parent.id)
        for c in children:
            if c.id in self.created:
                raise RuntimeError(f"ttc_fork_branch reused branch id {c.id!r}")
            self.created[c.id] = c
            n = self._child_count.get(parent.id, 0)
            self._child_count[parent.id] = n + 1
            self.tree_keys[c.id] = f"{pkey}.{n}"
        self.counters.branches_created += k
        if release_parent:
            self.release([parent])
        return list(children)

    def release(self, branches: Sequence[Branch]) -> None:
        """Release branches once (repeats and already released ones are skipped)."""
        fresh: list[Branch] = []
        seen: set[str] = set()
        for b in branches:
            if b.id in self.released or b.id in seen:
                continue
            seen.add(b.id)
            fresh.append(b)
        if not fresh:
            return
        self.released.update(seen)
        self.counters.branches_released += len(fresh)
        self.pm.hook.ttc_release_branches(ctx=self.ctx, branches=fresh)

    def live(self) -> list[Branch]:
        return [b for bid, b in self.created.items() if bid not in self.released]

    # -- engine ops -------------------------------------------------------------------------
    def extend(self, branches: Sequence[Branch]) -> Generator[Op, Any, list[Branch]]:
        """Extend each unfinished branch by one step (one batched engine call, shared with other
        searches). Returns the branches that were extended (evicted ones are left out); those
        that finished are released."""
        todo = [b for b in branches if not b.finished and b.id not in self.released]
        todo = self._evict(todo)
        todo = self._within_budget(todo)
        if not todo:
            return []
        self._note_retained(todo)
        # a search's token budget is shared by the branches of this round, so one round cannot
        # overshoot it by more than a token per branch
        budget = self.params.token_budget
        share = None if budget is None else max(1, (budget - self.counters.tokens_generated) // len(todo))
        requests = []
        for b in todo:
            left = self.params.max_total_tokens - len(b.token_ids)
            if share is not None:
                left = min(left, share)
            until = self._until
            if left < until.max_tokens:
                until = type(until)(delimiter=until.delimiter, max_tokens=max(1, left), stop=until.stop)
            requests.append(ExtendRequest(ctx=self.ctx, branch=b, until=until, sampling=self._sampling, n=1,
                                          seed_key=f"{self.tree_keys.get(b.id, b.id)}@{b.depth}"))
        results: list[list[Step]] = yield ExtendOp(self, requests)
        done: list[Branch] = []
        for b, steps in zip(todo, results):
            step = steps[0]
            prompt_len = len(b.all_token_ids)
            self.counters.tokens_generated += len(step.token_ids)
            self.counters.tokens_reused += step.tokens_reused
            self.counters.tokens_computed += prompt_len - step.tokens_reused + len(step.token_ids)
            self.counters.model_calls += 1
            self._apply(b, step)
            self.pm.hook.ttc_step_boundary(ctx=self.ctx, branch=b, step=step)
            if b.finished:
                done.append(b)
        self.counters.engine_rounds += 1
        self._note_kv(todo)
        self.release(done)
        return list(todo)

    def score(self, branches: Sequence[Branch]) -> Generator[Op, Any, list[float]]:
        """Score each branch's current state with the search's scorer (one :class:`Score`
        appended per call) and return the aggregated path scores."""
        branches = list(branches)
        if not branches:
            return []
        if self.scorer is None:
            raise RuntimeError(f"strategy {self.ctx.request_id}: no scorer configured")
        scores: list[Score] = yield ScoreOp(self, branches)
        for b, sc in zip(branches, scores):
            b.scores.append(sc)
        if self.scorer.uses_engine:
            self.counters.model_calls += len(branches)
            self.counters.engine_rounds += 1
        return [self.path_score(b) for b in branches]

    def embed(self, texts: Sequence[str], embedder: "Embedder | None" = None) -> Generator[Op, Any, list[list[float]]]:
        """One vector per text, from ``embedder`` (run in this process) or, when None, from the
        engine's ``embed`` call (an engine round)."""
        texts = list(texts)
        if not texts:
            return []
        out: list[list[float]] = yield EmbedOp(self, texts, embedder)
        self.counters.model_calls += len(texts)
        if embedder is None:
            self.counters.engine_rounds += 1
        return out

    # -- reading branches -------------------------------------------------------------------
    def path_score(self, branch: Branch) -> float:
        from ..scoring.aggregate import aggregate

        return aggregate([s.value for s in branch.scores], self.params.aggregation)

    def answer(self, branch: Branch) -> str | None:
        from ..scoring.verifiers import extract_answer

        return extract_answer(branch.text)

    # -- internals --------------------------------------------------------------------------
    def _apply(self, b: Branch, step: Step) -> None:
        # the branch grew past the state it was forked from: its reference goes, the new step's
        # engine-held state (if any) is what its children fork from next
        old, b.handle = b.handle, step.handle
        held.release(old)
        b.token_ids = b.token_ids + tuple(step.token_ids)
        b.text = b.text + step.text
        b.steps.append(step)
        b.depth += 1
        b.logprob += step.logprob
        if step.stop_reason in ("eos", "stop", "rejected"):
            b.finished, b.finish_reason = True, step.stop_reason
        elif self.params.stop_on_answer and self.answer(b) is not None:
            b.finished, b.finish_reason = True, "answer"
        elif b.depth >= self.params.max_steps:
            b.finished, b.finish_reason = True, "max_steps"
        elif len(b.token_ids) >= self.params.max_total_tokens:
            b.finished, b.finish_reason = True, "length"

    def _within_budget(self, branches: list[Branch]) -> list[Branch]:
        """All of ``branches`` while the search's token budget lasts; once it is spent they end
        (finish reason ``budget``) and are released: the strategy then picks among what it has."""
        budget = self.params.token_budget
        if budget is None or self.counters.tokens_generated < budget:
            return branches
        for b in branches:
            b.finished, b.finish_reason = True, "budget"
        self.release(branches)
        return []

    def _evict(self, branches: list[Branch]) -> list[Branch]:
        budget = self.params.kv_budget_tokens
        if budget is None or len(branches) < 2:
            return branches
        if sum(len(b.all_token_ids) for b in branches) <= budget:
            return branches
        ids = self.pm.hook.ttc_select_evictions(ctx=self.ctx, branches=list(branches), kv_budget_tokens=budget) or []
        ids = set(ids)
        if not ids:
            return branches
        evicted = [b for b in branches if b.id in ids]
        for b in evicted:
            b.finished, b.finish_reason = True, "evicted"
        self.counters.branches_evicted += len(evicted)
        self.release(evicted)
        return [b for b in branches if b.id not in ids]

    def _tree_tokens(self, branches: Sequence[Branch]) -> tuple[int, int]:
        nodes: dict[tuple[str, int], int] = {}
        for b in branches:
            for key, st in zip(node_keys(b), b.steps):
                nodes[key] = len(st.token_ids)
        return len(nodes), len(self.root.prompt_token_ids) + sum(nodes.values())

    def _note_retained(self, frontier: Sequence[Branch]) -> None:
        n_nodes, _ = self._tree_tokens(frontier)
        self.counters.retained_nodes_peak = max(self.counters.retained_nodes_peak, n_nodes)
        self.counters.retained_nodes_sum += n_nodes

    def _note_kv(self, frontier: Sequence[Branch]) -> None:
        _, shared = self._tree_tokens(frontier)
        unshared = sum(len(b.all_token_ids) for b in frontier)
        c = self.counters
        c.peak_kv_tokens = max(c.peak_kv_tokens, shared)
        c.peak_kv_tokens_unshared = max(c.peak_kv_tokens_unshared, unshared)
        # the ETS paper's measure leaves the prompt out: every method holds it, whatever it prunes
        c.kv_tokens_sum += shared - len(self.root.prompt_token_ids)
        c.kv_rounds += 1
