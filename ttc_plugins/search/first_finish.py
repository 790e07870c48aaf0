"""First Finish Search: N samples decoded in lockstep (one step per round); the first path that
finishes on its own (EOS, a stop string or a stated answer) wins and every other path is released
at once. Among paths finishing in the same round the one with the fewest generated tokens wins
(then the lowest index). When no path finishes naturally the shortest cut path is returned."""

from __future__ import annotations

from .. import hookimpl
from .base import FINISH_REASONS_NATURAL, SearchStrategy, Selection
from .params import SearchParams


class FirstFinish(SearchStrategy):
    name = "first_finish"
    Params = SearchParams
    default_scorer = None

    def run(self, s):
        paths = s.fork(s.root, self.params.width)
        live = list(paths)
        rounds = 0
        while live:
            stepped = yield from s.extend(live)
            rounds += 1
            winners = [b for b in stepped if b.finished and b.finish_reason in FINISH_REASONS_NATURAL]
            if winners:
                win = min(winners, key=lambda b: (len(b.token_ids), paths.index(b)))
                s.release([b for b in paths if b is not win])
                if s.scorer is not None:
                    yield from s.score([win])
                return Selection(chosen=win, candidates=[win], info={"rounds": rounds, "finished_natural": True})
            live = [b for b in stepped if not b.finished]
        win = min(paths, key=lambda b: (len(b.token_ids), paths.index(b)))
        return Selection(chosen=win, candidates=paths, info={"rounds": rounds, "finished_natural": False})


@hookimpl
def ttc_register_search_strategies(register) -> None:
    register(FirstFinish)
