"""Best-of-N and weighted best-of-N.

``best_of_n``: N independent samples, each scored (a process scorer per step, aggregated with
``aggregation``; an outcome scorer once at the end); the highest path score wins (ties: first).
``weighted_best_of_n``: the answer whose paths' scores sum highest wins; its best path is chosen.
"""

from __future__ import annotations

from .. import hookimpl
from .base import SearchStrategy, Selection
from .params import SearchParams
from .sampling import normalize_answer, sample_paths, vote


class BestOfN(SearchStrategy):
    name = "best_of_n"
    Params = SearchParams
    weighted = False

    def run(self, s):
        paths = yield from sample_paths(s, self.params.width, score=True)
        scores = [s.path_score(b) for b in paths]
        if self.weighted:
            answer, tally = vote(s, paths, scores)
            if answer is not None:
                pool = [i for i, b in enumerate(paths) if normalize_answer(s.answer(b)) == answer]
                best = max(pool, key=lambda i: (scores[i], -i))
                return Selection(chosen=paths[best], candidates=paths, answer=s.answer(paths[best]),
                                 info={"tally": tally})
        best = max(range(len(paths)), key=lambda i: (scores[i], -i))
        return Selection(chosen=paths[best], candidates=paths)


class WeightedBestOfN(BestOfN):
    name = "weighted_best_of_n"
    weighted = True


@hookimpl
def ttc_register_search_strategies(register) -> None:
    register(BestOfN)
    register(WeightedBestOfN)
