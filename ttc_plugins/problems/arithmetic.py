"""Arithmetic word problems with multi-step chains: ``arith`` (3-5 operations on small integers)
and ``arith-short`` (1-2 operations, within reach of a 135M model, so strategies can be compared
on accuracy and not only on cost).

Each problem is a story about one quantity changed by a sequence of events (buying packs,
giving away, splitting evenly, doubling); every event is one solution step with one equation,
so the arithmetic step checker can judge each step. Answers are non-negative integers."""

from __future__ import annotations

import random

from .base import Problem, ProblemSet

_NAMES = ["Ada", "Ben", "Chloe", "Dev", "Emma", "Farid", "Gita", "Hugo", "Iris", "Jon", "Kemal", "Lena"]
_ITEMS = ["apples", "marbles", "stickers", "coins", "books", "pencils", "shells", "cards"]


def _event(rng: random.Random, value: int, item: str) -> tuple[str, str, int]:
    """(sentence, equation step, new value)."""
    kinds = ["buy_packs", "give", "find", "double"]
    if value >= 4:
        kinds.append("split")
    while True:
        kind = rng.choice(kinds)
        if kind == "buy_packs":
            packs, per = rng.randint(2, 5), rng.randint(2, 9)
            return (f"Then they buy {packs} packs of {per} {item}.",
                    f"{packs} * {per} = {packs * per}, and {value} + {packs * per} = {value + packs * per}",
                    value + packs * per)
        if kind == "give" and value > 1:
            k = rng.randint(1, value - 1)
            return f"They give away {k} {item}.", f"{value} - {k} = {value - k}", value - k
        if kind == "find":
            k = rng.randint(1, 20)
            return f"They find {k} more {item}.", f"{value} + {k} = {value + k}", value + k
        if kind == "double" and value <= 200:
            return f"Then the number of {item} doubles.", f"{value} * 2 = {value * 2}", value * 2
        if kind == "split":
            divisors = [d for d in range(2, 7) if value % d == 0]
            if divisors:
                d = rng.choice(divisors)
                return (f"They share the {item} equally among {d} friends and keep one share.",
                        f"{value} / {d} = {value // d}", value // d)


def _generate(n: int, seed: int, family: str, events: tuple[int, int]) -> list[Problem]:
    rng = random.Random(f"{family}/{seed}")
    out = []
    for i in range(n):
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
        value = rng.randint(5, 30)
        sentences = [f"{name} has {value} {item}."]
        steps = []
        for _ in range(rng.randint(*events)):
            sentence, step, value = _event(rng, value, item)
            sentences.append(sentence)
            steps.append(step)
        question = " ".join(sentences) + f" How many {item} does {name} have now?"
        steps.append(f"The answer is {value}.")
        out.append(Problem(id=f"{family}-{seed}-{i}", family=family, question=question, answer=str(value),
                           solution=tuple(steps)))
    return out


def generate(n: int, seed: int = 0) -> list[Problem]:
    return _generate(n, seed, "arith", (3, 5))


def generate_short(n: int, seed: int = 0) -> list[Problem]:
    return _generate(n, seed, "arith-short", (1, 2))


ARITH = ProblemSet(name="arith", description="multi-step arithmetic word problems", generate=generate)
ARITH_SHORT = ProblemSet(name="arith-short", description="arithmetic word problems of one or two steps",
                         generate=generate_short)
