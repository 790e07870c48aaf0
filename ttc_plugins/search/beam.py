"""Step-level beam search with a process scorer.

Round 0 samples ``width`` first steps from the prompt. Every later round forks each of the
``width`` surviving beams into ``expand`` children, extends them one step, scores the new steps
and keeps the ``width`` best open paths (path score = ``aggregation`` over step scores). Finished
paths leave the beam; the search stops once ``width`` paths finished or no beam is left, and
returns the best finished path (``select``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .. import hookimpl
from .base import SearchStrategy
from .params import SearchParams
from .sampling import final_choice


class BeamParams(SearchParams):
    expand: int = Field(4, ge=1, le=256, description="children per beam per step")
    select: Literal["best", "weighted_vote", "majority"] = "best"


class BeamSearch(SearchStrategy):
    name = "beam"
    Params = BeamParams

    def run(self, s):
        p = self.params
        frontier = s.fork(s.root, p.width)
        completed = []
        while frontier:
            stepped = yield from s.extend(frontier)
            yield from s.score(stepped)
            completed += [b for b in stepped if b.finished]
            open_ = [b for b in stepped if not b.finished]
            if len(completed) >= p.width or not open_:
                s.release(open_)
                frontier = open_ if not completed else []
                break
            ranked = sorted(open_, key=lambda b: -s.path_score(b))
            keep, drop = ranked[: p.width], ranked[p.width :]
            s.release(drop)
            frontier = [c for b in keep for c in s.fork(b, p.expand)]
        return final_choice(s, completed, frontier, p.select)


@hookimpl
def ttc_register_search_strategies(register) -> None:
    register(BeamSearch)
