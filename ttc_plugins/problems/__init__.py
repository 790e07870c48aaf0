"""Bundled problem sets for ``ttc run`` / ``ttc bench``: seeded, so a (name, size, seed, split)
always yields the same problems; each problem carries a checker.

    from ttc_plugins.problems import load_problems
    problems = load_problems("arith", n=60, seed=0)
    test = load_problems("add-sub", n=200, split="test")   # disjoint from "train" and "dev"
"""

from __future__ import annotations

from .arithmetic import ARITH, ARITH_SHORT
from .base import Problem, ProblemSet
from .modular import MODULAR
from .one_step import ADD_SUB, ADD_SUB_SMALL, COMPARE, DIGIT_SUM, UNITS, WORD_1OP
from .splits import SPLITS, Split, split_of, take_split

PROBLEM_SETS: dict[str, ProblemSet] = {
    s.name: s for s in (ARITH, ARITH_SHORT, MODULAR, ADD_SUB, ADD_SUB_SMALL, COMPARE, UNITS, DIGIT_SUM, WORD_1OP)
}


def load_problems(name: str, n: int | None = None, seed: int | None = None, split: Split | None = None
                  ) -> list[Problem]:
    """``n`` problems (default: the set's size) of the named set, generated with ``seed``;
    with ``split``, only problems of that split (``train``/``dev``/``test``, disjoint by question)."""
    try:
        ps = PROBLEM_SETS[name]
    except KeyError:
        raise KeyError(f"unknown problem set {name!r}; available: {', '.join(sorted(PROBLEM_SETS))}") from None
    n = ps.default_size if n is None else n
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    seed = ps.default_seed if seed is None else seed
    if split is None:
        return ps.generate(n, seed)
    return take_split(ps.generate, n, seed, split)


__all__ = ["PROBLEM_SETS", "SPLITS", "Problem", "ProblemSet", "Split", "load_problems", "split_of"]
