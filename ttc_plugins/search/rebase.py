"""REBASE: reward-balanced search (Wu et al., 2024, arXiv 2408.00724).

Round 0 samples ``width`` first steps. Each later round gives the remaining budget
``width - finished`` to the open leaves in proportion to ``softmax(path_score / balance_temperature)``
(integer split by largest remainder): a leaf that gets ``m`` forks into ``m`` children, a leaf that
gets 0 is pruned. The search ends when ``width`` paths finished (or nothing is open); the answer is
picked by ``select`` (the paper uses a weighted vote)."""

from __future__ import annotations

from typing import Any, Generator, Literal, Sequence

from pydantic import Field

from .. import hookimpl
from ..types import Branch
from .base import SearchState, SearchStrategy, allocate, softmax
from .params import SearchParams
from .sampling import final_choice


class RebaseParams(SearchParams):
    balance_temperature: float = Field(0.2, gt=0.0, le=100.0, description="softmax temperature over leaf rewards")
    select: Literal["best", "weighted_vote", "majority"] = "best"


class Rebase(SearchStrategy):
    name = "rebase"
    Params = RebaseParams

    def plan(self, s: SearchState, leaves: Sequence[Branch], budget: int) -> Generator[Any, Any, list[int]]:
        """Children per leaf (sums to ``budget``). REBASE: the softmax split."""
        weights = softmax([s.path_score(b) for b in leaves], self.params.balance_temperature)
        return allocate(weights, budget)
        yield  # a generator like ETS's, which needs engine calls

    def run(self, s):
        p = self.params
        frontier = s.fork(s.root, p.width)
        completed: list[Branch] = []
        last_open: list[Branch] = []
        rounds = 0
        while frontier:
            stepped = yield from s.extend(frontier)
            yield from s.score(stepped)
            rounds += 1
            completed += [b for b in stepped if b.finished]
            leaves = [b for b in stepped if not b.finished]
            last_open = leaves
            budget = p.width - len(completed)
            if budget <= 0 or not leaves:
                s.release(leaves)
                break
            counts = yield from self.plan(s, leaves, budget)
            s.release([b for b, m in zip(leaves, counts) if m == 0])
            frontier = [c for b, m in zip(leaves, counts) if m > 0 for c in s.fork(b, m)]
        sel = final_choice(s, completed, last_open, p.select)
        sel.info["rounds"] = rounds
        return sel


@hookimpl
def ttc_register_search_strategies(register) -> None:
    register(Rebase)
