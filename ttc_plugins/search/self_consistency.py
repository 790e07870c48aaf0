"""Self-consistency: N independent samples, majority vote over their extracted final answers
(numbers compared by value; ties go to the answer seen first). Needs no scorer; with one
(``scorer=...``), paths are scored too and the reported path is the best-scored majority path."""

from __future__ import annotations

from .. import hookimpl
from .base import SearchStrategy, Selection
from .params import SearchParams
from .sampling import normalize_answer, sample_paths, vote


class SelfConsistency(SearchStrategy):
    name = "self_consistency"
    Params = SearchParams
    default_scorer = None

    def run(self, s):
        paths = yield from sample_paths(s, self.params.width, score=s.scorer is not None)
        answer, tally = vote(s, paths)
        if answer is None:
            return Selection(chosen=paths[0], candidates=paths, info={"tally": {}})
        pool = [b for b in paths if normalize_answer(s.answer(b)) == answer]
        chosen = max(pool, key=lambda b: s.path_score(b)) if s.scorer is not None else pool[0]
        return Selection(chosen=chosen, candidates=paths, answer=s.answer(chosen), info={"tally": tally})


@hookimpl
def ttc_register_search_strategies(register) -> None:
    register(SelfConsistency)
