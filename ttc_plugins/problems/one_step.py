"""One-step families, chosen by measuring where SmolLM2-135M-Instruct is neither hopeless nor
done (``benchmarks/results/families-smollm2.md``): every problem is one or two checkable
equations, so the calculator verifier ``arith_steps`` can judge a step without the answer.

- ``add-sub``: ``What is 47 + 38?`` (two-digit addition or subtraction, non-negative results);
- ``add-sub-small``: ``What is 47 + 8?`` (a two-digit number plus or minus a digit);
- ``compare``: ``Which number is larger, 412 or 87?`` (the step ``412 - 87 = 325`` shows it);
- ``units``: ``How many minutes are in 7 hours?``, 2 to 99 of the larger unit (one multiplication by a known factor);
- ``digit-sum``: ``What is the sum of the digits of 4721?`` (one addition of three or four digits);
- ``word-1op``: a story with one event (the ``arith`` stories, cut to one step).
"""

from __future__ import annotations

import random

from .arithmetic import _generate
from .base import Problem, ProblemSet

_UNITS = [  # (larger unit, smaller unit, factor)
    ("hours", "minutes", 60), ("minutes", "seconds", 60), ("days", "hours", 24), ("weeks", "days", 7),
    ("years", "months", 12), ("meters", "centimeters", 100), ("kilograms", "grams", 1000),
    ("centimeters", "millimeters", 10), ("kilometers", "meters", 1000), ("dozens", "eggs", 12),
    ("feet", "inches", 12), ("yards", "feet", 3), ("liters", "milliliters", 1000), ("decades", "years", 10),
]


def _problem(family: str, seed: int, i: int, question: str, steps: list[str], answer: int, **meta) -> Problem:
    return Problem(id=f"{family}-{seed}-{i}", family=family, question=question, answer=str(answer),
                   solution=(*steps, f"The answer is {answer}."), meta=meta)


def add_sub(n: int, seed: int = 0) -> list[Problem]:
    rng = random.Random(f"add-sub/{seed}")
    out = []
    for i in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if rng.random() < 0.5:
            q, step, ans = f"What is {a} + {b}?", f"{a} + {b} = {a + b}", a + b
        else:
            a, b = max(a, b), min(a, b)
            q, step, ans = f"What is {a} - {b}?", f"{a} - {b} = {a - b}", a - b
        out.append(_problem("add-sub", seed, i, q, [step], ans))
    return out


def add_sub_small(n: int, seed: int = 0) -> list[Problem]:
    rng = random.Random(f"add-sub-small/{seed}")
    out = []
    for i in range(n):
        a, b = rng.randint(10, 99), rng.randint(1, 9)
        op = rng.choice("+-")
        ans = a + b if op == "+" else a - b
        out.append(_problem("add-sub-small", seed, i, f"What is {a} {op} {b}?", [f"{a} {op} {b} = {ans}"], ans))
    return out


def compare(n: int, seed: int = 0) -> list[Problem]:
    rng = random.Random(f"compare/{seed}")
    out = []
    for i in range(n):
        a, b = rng.sample(range(10, 1000), 2)
        hi, lo = max(a, b), min(a, b)
        out.append(_problem("compare", seed, i, f"Which number is larger, {a} or {b}?",
                            [f"{hi} - {lo} = {hi - lo}"], hi))
    return out


def units(n: int, seed: int = 0) -> list[Problem]:
    rng = random.Random(f"units/{seed}")
    out = []
    for i in range(n):
        big, small, factor = rng.choice(_UNITS)
        k = rng.randint(2, 99)
        out.append(_problem("units", seed, i, f"How many {small} are in {k} {big}?",
                            [f"{k} * {factor} = {k * factor}"], k * factor, factor=factor))
    return out


def digit_sum(n: int, seed: int = 0) -> list[Problem]:
    rng = random.Random(f"digit-sum/{seed}")
    out = []
    for i in range(n):
        value = rng.randint(100, 9999)
        digits = [int(c) for c in str(value)]
        out.append(_problem("digit-sum", seed, i, f"What is the sum of the digits of {value}?",
                            [f"{' + '.join(map(str, digits))} = {sum(digits)}"], sum(digits)))
    return out


def word_1op(n: int, seed: int = 0) -> list[Problem]:
    return _generate(n, seed, "word-1op", (1, 1))


ADD_SUB = ProblemSet(name="add-sub", description="two-digit addition or subtraction", generate=add_sub,
                     path_tokens=64)
ADD_SUB_SMALL = ProblemSet(name="add-sub-small", description="a two-digit number plus or minus a digit",
                           generate=add_sub_small, path_tokens=64)
COMPARE = ProblemSet(name="compare", description="the larger of two numbers", generate=compare, path_tokens=64)
UNITS = ProblemSet(name="units", description="unit conversions (one multiplication)", generate=units,
                   path_tokens=64)
DIGIT_SUM = ProblemSet(name="digit-sum", description="sum of the digits of a three- or four-digit number",
                       generate=digit_sum, path_tokens=64)
WORD_1OP = ProblemSet(name="word-1op", description="word problems of one step", generate=word_1op, path_tokens=64)
