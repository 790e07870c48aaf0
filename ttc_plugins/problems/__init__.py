"""Bundled problem sets for ``ttc run`` / ``ttc bench``: seeded, so a (name, size, seed) triple
always yields the same problems; each problem carries a checker.

    from ttc_plugins.problems import load_problems
    problems = load_problems("arith", n=60, seed=0)
"""

from __future__ import annotations

from .arithmetic import ARITH, ARITH_SHORT
from .base import Problem, ProblemSet
from .modular import MODULAR

PROBLEM_SETS: dict[str, ProblemSet] = {s.name: s for s in (ARITH, ARITH_SHORT, MODULAR)}


def load_problems(name: str, n: int | None = None, seed: int | None = None) -> list[Problem]:
    """``n`` problems (default: the set's size) of the named set, generated with ``seed``."""
    try:
        ps = PROBLEM_SETS[name]
    except KeyError:
        raise KeyError(f"unknown problem set {name!r}; available: {', '.join(sorted(PROBLEM_SETS))}") from None
    n = ps.default_size if n is None else n
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return ps.generate(n, ps.default_seed if seed is None else seed)


__all__ = ["PROBLEM_SETS", "Problem", "ProblemSet", "load_problems"]
