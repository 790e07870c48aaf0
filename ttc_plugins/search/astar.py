"""A*-decoding: best-first search over partial paths under a token budget.

A priority queue holds open and finished paths keyed by ``f = path_score - length_penalty * depth``.
Each round pops the ``width`` best entries; a popped finished path ends the search (no open path
scores higher); each popped open path is forked into ``expand`` children, which are extended,
scored and pushed. When ``token_budget`` generated tokens are spent, the best finished path is
returned (else the best open one)."""

from __future__ import annotations

import heapq
import itertools

from pydantic import Field

from .. import hookimpl
from .base import SearchStrategy, Selection
from .params import SearchParams
from .sampling import final_choice


class AStarParams(SearchParams):
    expand: int = Field(2, ge=1, le=64, description="children per popped path")
    # the shared budget (SearchParams.token_budget), which A* always needs: a default here
    token_budget: int = Field(2048, ge=1, description="generated tokens the search may spend")
    length_penalty: float = Field(0.0, ge=0.0, description="priority cost per step")


class AStar(SearchStrategy):
    name = "astar"
    Params = AStarParams

    def run(self, s):
        p = self.params
        order = itertools.count()
        heap: list = []
        finished = []

        def push(b):
            f = s.path_score(b) - p.length_penalty * b.depth
            heapq.heappush(heap, (-f, next(order), b))

        first = s.fork(s.root, p.width)
        stepped = yield from s.extend(first)
        yield from s.score(stepped)
        for b in stepped:
            push(b)
            if b.finished:
                finished.append(b)
        pops = 0
        while heap and s.counters.tokens_generated < p.token_budget:
            popped = [heapq.heappop(heap)[2] for _ in range(min(p.width, len(heap)))]
            pops += len(popped)
            goal = next((b for b in popped if b.finished), None)
            if goal is not None:
                s.release([b for b in popped if b is not goal])
                return Selection(chosen=goal, candidates=finished, info={"pops": pops, "goal_popped": True})
            kids = [c for b in popped for c in s.fork(b, p.expand)]
            stepped = yield from s.extend(kids)
            yield from s.score(stepped)
            for b in stepped:
                push(b)
                if b.finished:
                    finished.append(b)
        open_ = sorted((e for e in heap if not e[2].finished), key=lambda e: e[:2])
        sel = final_choice(s, finished, [e[2] for e in open_[:1]], "best")
        sel.info.update({"pops": pops, "goal_popped": False})
        return sel


@hookimpl
def ttc_register_search_strategies(register) -> None:
    register(AStar)
