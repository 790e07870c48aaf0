"""Programmatic outcome verifiers: extract a final answer from a path and check it against the
problem's reference (integers; math expressions through sympy).

Registered scorers (outcome kind, no engine calls; both are oracles, ``Scorer.oracle``: they
read the reference answer, so a search with them is the pass@k ceiling, never a search row):

- ``integer_answer``: 1.0 when the extracted answer is the reference integer, else 0.0;
- ``math_answer``: 1.0 when the extracted answer equals the reference as a number or as a
  sympy expression (``3/4``, ``0.75``, ``\\frac{3}{4}``, ``2*x+x`` vs ``3x``), else 0.0.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Sequence

from pydantic import ConfigDict, Field

from ttc_plugins.request_model import RequestModel

from .. import hookimpl
from ..types import Score
from .base import OracleItem, Scorer

_BOXED = re.compile(r"\\boxed\s*\{")
_MARKERS = re.compile(r"(?:####|(?:final\s+)?answer\s*(?:is|:|=)\s*:?)\s*", re.IGNORECASE)


def _boxed_contents(text: str) -> str | None:
    last = None
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            last = text[m.end() : i - 1]
    return last


def extract_answer(text: str) -> str | None:
    """The final answer stated in ``text``: the last ``\\boxed{...}``, else what follows the
    last ``####``, ``answer is`` or ``Answer:`` on its line (trailing period and ``$`` removed).
    ``None`` when the text states no answer yet."""
    boxed = _boxed_contents(text)
    if boxed is not None:
        return boxed.strip() or None
    matches = list(_MARKERS.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :].split("\n", 1)[0].strip()
    rest = re.sub(r"[.\s]+$", "", rest).strip().strip("$").strip()
    return rest or None


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_number(text: str) -> str | None:
    """The answer a text gives: the stated one (:func:`extract_answer`), else its last number
    (a completion that stops at ``46 - 28 = 18`` answered 18). ``None`` when it has neither."""
    stated = extract_answer(text)
    if stated is not None:
        return stated
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def _to_fraction(s: str) -> Fraction | None:
    t = s.strip().replace(",", "").replace("$", "").replace(" ", "")
    t = re.sub(r"\\frac\{([^{}]+)\}\{([^{}]+)\}", r"\1/\2", t)
    if t.endswith("%"):
        t = t[:-1]
    try:
        return Fraction(t)
    except (ValueError, ZeroDivisionError):
        return None


def _leading_number(s: str) -> str:
    """'42 apples' -> '42' (answers often carry a unit)."""
    m = re.match(r"\s*[-+]?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?", s)
    return m.group(0) if m else s


def integers_equal(answer: str | None, reference: str | int | None) -> bool:
    if answer is None or reference is None:
        return False
    a, r = _to_fraction(_leading_number(answer)), _to_fraction(str(reference))
    return a is not None and r is not None and a.denominator == 1 and a == r


def _sympify(s: str):
    import sympy
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    t = s.strip().strip("$")
    t = re.sub(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}", r"((\1)/(\2))", t)
    t = re.sub(r"\\sqrt\{([^{}]+)\}", r"sqrt(\1)", t)
    t = t.replace("\\cdot", "*").replace("\\times", "*").replace("\\pi", "pi").replace("\\left", "").replace("\\right", "")
    t = t.replace("{", "(").replace("}", ")").replace(",", "")
    transforms = standard_transformations + (implicit_multiplication_application, convert_xor)
    return parse_expr(t, transformations=transforms, evaluate=True, local_dict={"pi": sympy.pi, "e": sympy.E})


def math_equal(answer: str | None, reference: str | None, *, tol: float = 1e-9) -> bool:
    """Whether two answers are the same number or the same expression."""
    if answer is None or reference is None:
        return False
    if answer.strip() == str(reference).strip():
        return True
    a, r = _to_fraction(_leading_number(answer)), _to_fraction(str(reference))
    if a is not None and r is not None:
        return a == r
    try:
        import sympy

        ea, er = _sympify(answer), _sympify(str(reference))
        diff = sympy.simplify(ea - er)
        if diff == 0:
            return True
        if diff.is_number:
            return abs(complex(diff)) <= tol * max(1.0, abs(complex(er)))
    except Exception:  # unparsable answer: not equal
        return False
    return False


class _FinalAnswerScorer(Scorer):
    """Outcome scorer: 1.0 when the path's extracted final answer matches the reference. An
    oracle: it reads the gold answer, so its searches measure the pass@k ceiling."""

    kind = "outcome"
    oracle = True

    def matches(self, answer: str, reference) -> bool:
        raise NotImplementedError

    def score(self, items: Sequence[OracleItem]) -> list[Score]:
        out = []
        read = final_number if self.params.last_number else extract_answer
        for it in items:
            ans = read(it.branch.text)
            if ans is None:
                out.append(self._score(self.params.missing_score, answer=None))
            else:
                out.append(self._score(1.0 if self.matches(ans, it.reference) else 0.0, answer=ans))
        return out


class IntegerAnswer(_FinalAnswerScorer):
    """1.0 when the path's final answer is the reference integer."""

    name = "integer_answer"

    class Params(RequestModel):
        model_config = ConfigDict(frozen=True)
        missing_score: float = Field(0.0, description="score of a path that states no answer")
        last_number: bool = Field(False, description="judge a path that states no answer by its last number "
                                  "(as the bundled problems are checked)")

    def matches(self, answer: str, reference) -> bool:
        return integers_equal(answer, reference)


class MathAnswer(_FinalAnswerScorer):
    """1.0 when the path's final answer equals the reference (numbers or sympy expressions)."""

    name = "math_answer"

    class Params(RequestModel):
        model_config = ConfigDict(frozen=True)
        missing_score: float = 0.0
        tolerance: float = Field(1e-9, ge=0.0)
        last_number: bool = Field(False, description="judge a path that states no answer by its last number")

    def matches(self, answer: str, reference) -> bool:
        return math_equal(answer, reference, tol=self.params.tolerance)


@hookimpl
def ttc_register_scorers(register) -> None:
    register(IntegerAnswer)
    register(MathAnswer)
