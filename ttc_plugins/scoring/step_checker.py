"""A programmatic process reward model for arithmetic chains.

``arith_steps`` checks every equation ``a op b (op c ...) = r`` in the latest step (numbers and
``+ - * / × ÷ x``; ``*``/``/`` bind tighter) and scores the step by the fraction that hold. A
step with no equation scores ``no_equation_score``. Only the latest step is judged; aggregate
over the path with ``ttc.search.aggregation`` (``min``: one wrong step sinks the path).
"""

from __future__ import annotations

import ast
import operator
import re
from fractions import Fraction
from typing import Sequence

from pydantic import ConfigDict, Field

from ttc_plugins.request_model import RequestModel

from .. import hookimpl
from ..types import Score
from .base import Scorer, ScoreItem

_NUM = r"\d+(?:\.\d+)?"
_EQ = re.compile(rf"((?:{_NUM}\s*[-+*/×÷x]\s*)+{_NUM})\s*=\s*(-?{_NUM})")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _eval(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return Fraction(str(node.value))
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.left), _eval(node.right))
    raise ValueError("not arithmetic")


def check_equations(text: str) -> list[tuple[str, bool]]:
    """Each equation found in ``text`` with whether it holds."""
    out = []
    for m in _EQ.finditer(text):
        lhs = m.group(1).replace("×", "*").replace("÷", "/").replace("x", "*")
        try:
            ok = _eval(ast.parse(lhs, mode="eval")) == Fraction(m.group(2))
        except (ValueError, ZeroDivisionError, SyntaxError):
            ok = False
        out.append((m.group(0), ok))
    return out


def step_score(text: str, no_equation_score: float = 1.0) -> tuple[float, list[tuple[str, bool]]]:
    """``(score, checks)`` for one step: the fraction of its equations that hold, or
    ``no_equation_score`` when it has none. The verifier itself, outside the scorer class, so a
    benchmark can hand the very same judgement to another tool (``benchmarks/bench_its_hub.py``)."""
    checks = check_equations(text)
    if not checks:
        return no_equation_score, checks
    return sum(ok for _, ok in checks) / len(checks), checks


class ArithmeticStepChecker(Scorer):
    name = "arith_steps"
    kind = "process"

    class Params(RequestModel):
        model_config = ConfigDict(frozen=True)
        no_equation_score: float = Field(1.0, ge=0.0, le=1.0)

    def score(self, items: Sequence[ScoreItem]) -> list[Score]:
        out = []
        for it in items:
            text = it.branch.steps[-1].text if it.branch.steps else ""
            value, checks = step_score(text, self.params.no_equation_score)
            if not checks:
                out.append(self._score(value, equations=0))
            else:
                out.append(self._score(value, equations=len(checks), wrong=[e for e, ok in checks if not ok]))
        return out


@hookimpl
def ttc_register_scorers(register) -> None:
    register(ArithmeticStepChecker)
