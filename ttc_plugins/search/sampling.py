"""Shared pieces of the sampling strategies (best-of-N, self-consistency, First Finish): fork the
root into N independent paths and extend them round by round, scoring as the scorer's kind asks."""

from __future__ import annotations

from collections import Counter
from typing import Any, Generator, Sequence

from ..types import Branch
from .base import SearchState


def sample_paths(s: SearchState, n: int, *, score: bool) -> Generator[Any, Any, list[Branch]]:
    """N independent paths to completion. With ``score``, a process scorer judges every step and an
    outcome scorer judges each finished path once."""
    paths = s.fork(s.root, n)
    live = list(paths)
    process = score and s.scorer is not None and s.scorer.kind == "process"
    while live:
        stepped = yield from s.extend(live)
        if process:
            yield from s.score(stepped)
        live = [b for b in stepped if not b.finished]
    if score and not process:
        yield from s.score(paths)
    return paths


def normalize_answer(answer: str | None) -> str | None:
    """Canonical form for voting: numbers compare by value (``"1,000" == "1000.0"``)."""
    if answer is None:
        return None
    from fractions import Fraction

    t = answer.strip().replace(",", "").replace("$", "")
    try:
        f = Fraction(t)
        return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"
    except (ValueError, ZeroDivisionError):
        return " ".join(t.split()).lower()


def vote(s: SearchState, paths: Sequence[Branch], weights: Sequence[float] | None = None) -> tuple[str | None, dict]:
    """(winning normalised answer, tally). Ties go to the answer seen first."""
    tally: Counter[str] = Counter()
    first: dict[str, int] = {}
    for i, b in enumerate(paths):
        a = normalize_answer(s.answer(b))
        if a is None:
            continue
        tally[a] += weights[i] if weights is not None else 1.0
        first.setdefault(a, i)
    if not tally:
        return None, {}
    best = max(tally, key=lambda a: (tally[a], -first[a]))
    return best, dict(tally)


def final_choice(s: SearchState, completed: Sequence[Branch], fallback: Sequence[Branch], select: str = "best"):
    """Pick the answer path among ``completed`` (else ``fallback``, the paths still open):
    ``best``: highest path score; ``weighted_vote``: answer with the largest summed score;
    ``majority``: most frequent answer. Returns a Selection."""
    from .base import Selection

    pool = list(completed) or list(fallback)
    if not pool:
        return Selection(chosen=None, candidates=[])
    scores = [s.path_score(b) for b in pool]
    if select in ("weighted_vote", "majority"):
        answer, tally = vote(s, pool, scores if select == "weighted_vote" else None)
        if answer is not None:
            idx = [i for i, b in enumerate(pool) if normalize_answer(s.answer(b)) == answer]
            best = max(idx, key=lambda i: (scores[i], -i))
            return Selection(chosen=pool[best], candidates=pool, answer=s.answer(pool[best]), info={"tally": tally})
    best = max(range(len(pool)), key=lambda i: (scores[i], -i))
    return Selection(chosen=pool[best], candidates=pool)
