"""Diverse verifier tree search (DVTS): ``width // expand`` independent subtrees, each a greedy
beam of one: every round each subtree's path is forked into ``expand`` children, extended and
scored, and only the best child survives (the first step too: ``expand`` samples per subtree). Subtrees never compete, which keeps the final pool
diverse; the answer is the best finished path (``select``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .. import hookimpl
from .base import SearchStrategy
from .params import SearchParams
from .sampling import final_choice


class DVTSParams(SearchParams):
    expand: int = Field(4, ge=1, le=256, description="children per subtree per step")
    select: Literal["best", "weighted_vote", "majority"] = "best"


class DVTS(SearchStrategy):
    name = "dvts"
    Params = DVTSParams

    def run(self, s):
        p = self.params
        n_trees = max(1, p.width // p.expand)
        first = s.fork(s.root, n_trees * p.expand)
        # per subtree: the children to extend this round (the first step is sampled expand times too)
        groups = [first[i * p.expand : (i + 1) * p.expand] for i in range(n_trees)]
        completed, last_open = [], []
        while groups:
            flat = [b for g in groups for b in g]
            stepped = set(id(b) for b in (yield from s.extend(flat)))
            yield from s.score([b for b in flat if id(b) in stepped])
            next_groups, last_open = [], []
            for g in groups:
                g = [b for b in g if id(b) in stepped]
                if not g:
                    continue
                best = max(g, key=lambda b: s.path_score(b))
                s.release([b for b in g if b is not best])
                if best.finished:
                    completed.append(best)
                else:
                    last_open.append(best)
                    next_groups.append(s.fork(best, p.expand))
            groups = next_groups
        return final_choice(s, completed, last_open, p.select)


@hookimpl
def ttc_register_search_strategies(register) -> None:
    register(DVTS)
