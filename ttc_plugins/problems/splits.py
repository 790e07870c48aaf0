"""Disjoint train / dev / test splits of a generated family.

A problem's split is a function of its question text alone (a stable hash), so no question is in
two splits whatever the seed or size asked for: tuning on ``dev`` (or training an adapter on
``train``) never sees a ``test`` question. Shares: train 60%, dev 20%, test 20%.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Literal

from .base import Problem

Split = Literal["train", "dev", "test"]
SPLITS: tuple[Split, ...] = ("train", "dev", "test")
_BOUNDS = {"train": (0, 60), "dev": (60, 80), "test": (80, 100)}


def split_of(question: str) -> Split:
    bucket = int.from_bytes(hashlib.sha256(question.encode("utf-8")).digest()[:8], "big") % 100
    return next(s for s, (lo, hi) in _BOUNDS.items() if lo <= bucket < hi)


def take_split(generate: Callable[[int, int], list[Problem]], n: int, seed: int, split: Split) -> list[Problem]:
    """The first ``n`` distinct problems of ``split`` in the family's seeded stream (generators
    are prefix-stable: ``generate(m)[:k] == generate(k)``). Raises when the family has fewer than
    ``n`` distinct questions in that split."""
    if split not in _BOUNDS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    m, found = max(64, 6 * n), -1
    while True:
        out, seen = [], set()
        for p in generate(m, seed):
            if p.question not in seen and split_of(p.question) == split:
                seen.add(p.question)
                out.append(p)
                if len(out) == n:
                    return out
        if len(out) == found:  # twice the stream, no new question: the family is exhausted
            raise ValueError(f"only {len(out)} distinct {split} problems in this family; asked for {n}")
        found, m = len(out), m * 2
