"""Modular arithmetic chains: evaluate ``((a op b) op c ...) mod m`` step by step.

Each solution step is one equation (an operation, then the reduction ``x - m * q = r``), so the
arithmetic step checker can judge it. Answers are integers in ``[0, m)``."""

from __future__ import annotations

import random

from .base import Problem, ProblemSet


def generate(n: int, seed: int = 0) -> list[Problem]:
    rng = random.Random(f"modular/{seed}")
    out = []
    for i in range(n):
        m = rng.choice([5, 7, 9, 11, 13, 17])
        value = rng.randint(2, 40)
        expr = str(value)
        steps = []
        for _ in range(rng.randint(2, 4)):
            op, k = rng.choice(["+", "*"]), rng.randint(2, 15)
            new = value + k if op == "+" else value * k
            q, r = divmod(new, m)
            steps.append(f"{value} {op} {k} = {new}, and {new} - {m} * {q} = {r}")
            expr = f"({expr} {op} {k})"
            value = r
        steps.append(f"The answer is {value}.")
        question = f"Compute {expr} mod {m}, reducing mod {m} after each operation."
        out.append(Problem(id=f"modular-{seed}-{i}", family="modular", question=question, answer=str(value),
                           solution=tuple(steps), meta={"modulus": m}))
    return out


MODULAR = ProblemSet(name="modular", description="modular arithmetic chains", generate=generate)
