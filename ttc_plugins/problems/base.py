"""Problem sets: seeded generators of problems with a reference answer, a worked reference
solution (one step per line) and a checker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..scoring.verifiers import final_number, integers_equal

INSTRUCTION = (
    "Solve the problem step by step, one step per line, each step one calculation "
    "like 3 + 4 = 7. End with 'The answer is N.'\n\n"
)


@dataclass(frozen=True)
class Problem:
    """One problem. ``answer`` is the reference final answer as text; ``solution`` the reference
    steps (each a line with one checkable equation, ending with the answer sentence)."""

    id: str
    family: str
    question: str
    answer: str
    solution: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def prompt(self) -> str:
        return f"{INSTRUCTION}Problem: {self.question}\nSolution:\n"

    def check(self, text_or_answer: str | None) -> bool:
        """Whether a completion (or a bare answer) is correct: the answer stated in it (``The
        answer is N``, ``\\boxed{N}``, ``#### N``), else its last number, equals the reference.
        (A completion that stops at ``46 - 28 = 18`` answered 18: the usual reading, the same for
        every method.)"""
        if text_or_answer is None:
            return False
        stated = final_number(text_or_answer)
        return integers_equal(stated if stated is not None else text_or_answer.strip(), self.answer)

    def search_prompt(self):
        from ..search.driver import SearchPrompt

        return SearchPrompt(text=self.prompt, reference=self.answer, request_id=self.id)


@dataclass(frozen=True)
class ProblemSet:
    """A named family: ``generate(n, seed)`` is a pure function of its arguments."""

    name: str
    description: str
    generate: Callable[[int, int], list[Problem]]
    default_seed: int = 0
    default_size: int = 60
    #: a solution path's token cap that fits the set (``ttc run``'s default ``max_total_tokens``):
    #: a one-step answer needs ~30 tokens, and a path that rambles past the cap is wrong anyway
    path_tokens: int = 320
