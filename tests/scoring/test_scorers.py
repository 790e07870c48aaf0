from __future__ import annotations

import pytest

from ttc_plugins.scoring.aggregate import aggregate
from ttc_plugins.scoring.base import OracleItem, ScoreItem, VerifyOp, run_scorer
from ttc_plugins.search.engine import SyncEngineOps
from ttc_plugins.scoring.self_eval import SelfEval, StepLogprob
from ttc_plugins.scoring.step_checker import ArithmeticStepChecker, check_equations
from ttc_plugins.scoring.verifiers import IntegerAnswer, MathAnswer, extract_answer, integers_equal, math_equal
from ttc_plugins.types import Branch, Step


@pytest.mark.parametrize(
    "text, answer",
    [
        ("so 3 + 4 = 7\nThe answer is 7.", "7"),
        ("The answer is: $1,250.", "1,250"),
        ("work...\n#### 42\n", "42"),
        ("Answer: 3/4", "3/4"),
        ("we get \\boxed{\\frac{1}{2}} and then the answer is 5", "\\frac{1}{2}"),
        ("no conclusion yet: 3 + 4 = 7", None),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


def test_integer_and_math_equality():
    assert integers_equal("1,000", "1000") and integers_equal("42 apples", 42)
    assert not integers_equal("41", "42") and not integers_equal("2.5", "2.5") and not integers_equal(None, "1")
    assert math_equal("0.75", "3/4") and math_equal("\\frac{3}{4}", "0.75")
    assert math_equal("2x + x", "3*x") and math_equal("\\sqrt{4}", "2")
    assert not math_equal("3x", "2*x") and not math_equal("0.7", "3/4") and not math_equal("))(", "1")


def _branch(*steps: str) -> Branch:
    b = Branch(id="b", parent_id=None, prompt_token_ids=(1,))
    for s in steps:
        b.steps.append(Step(branch_id="b", text=s, token_ids=(5,) * max(1, len(s.split())), logprob=-0.5))
        b.text += s
    return b


def test_outcome_verifiers_score_against_the_reference():
    ok, wrong, missing = _branch("2 * 3 = 6\n", "The answer is 6.\n"), _branch("The answer is 7.\n"), _branch("2 * 3 = 6\n")
    items = [OracleItem("p", ok, "6"), OracleItem("p", wrong, "6"), OracleItem("p", missing, "6")]
    assert [s.value for s in IntegerAnswer(IntegerAnswer.Params()).score(items)] == [1.0, 0.0, 0.0]
    scores = MathAnswer(MathAnswer.Params(missing_score=0.25)).score(items)
    assert [s.value for s in scores] == [1.0, 0.0, 0.25] and all(s.kind == "outcome" for s in scores)


def test_step_checker_judges_each_equation_of_the_latest_step():
    assert check_equations("4 * 6 = 24, and 9 + 24 = 33") == [("4 * 6 = 24", True), ("9 + 24 = 33", True)]
    assert [ok for _, ok in check_equations("2 + 3 * 4 = 14 and 10 / 4 = 2.5 and 7 - 9 = -2 and 8 / 0 = 1")] == [
        True, True, True, False]
    checker = ArithmeticStepChecker(ArithmeticStepChecker.Params(no_equation_score=0.5))
    items = [ScoreItem("p", _branch("1 + 1 = 3\n", "2 * 5 = 10, and 10 + 1 = 12\n")), ScoreItem("p", _branch("Let me think.\n"))]
    first, second = checker.score(items)
    assert first.value == 0.5 and first.detail["wrong"] == ["10 + 1 = 12"] and first.kind == "process"
    assert second.value == 0.5 and second.detail["equations"] == 0


def test_aggregations():
    v = [0.9, 0.5, 0.8]
    assert aggregate(v, "last") == 0.8 and aggregate(v, "min") == 0.5
    assert aggregate(v, "prod") == pytest.approx(0.36) and aggregate(v, "mean") == pytest.approx(2.2 / 3)
    assert aggregate([], "min") == 0.0
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(v, "max")


class _Judge(SyncEngineOps):
    """Records the verification prompts it is asked (an engine's verify_prob)."""

    def __init__(self):
        self.prompts = []

    def verify_prob(self, requests):
        self.prompts += [r.prompt for r in requests]
        return [0.8 if "= 6" in r.prompt else 0.2 for r in requests]


def test_self_eval_asks_the_engine_once_per_batch_and_logprob_needs_none():
    judge = _Judge()
    scorer = SelfEval(SelfEval.Params())
    items = [ScoreItem("Q: 2*3?\n", _branch("2 * 3 = 6\n")), ScoreItem("Q: 2*3?\n", _branch("2 * 3 = 5\n"))]
    op = next(scorer.score(items))  # the scorer asks; it never calls the engine itself
    assert isinstance(op, VerifyOp) and len(op.requests) == 2
    assert [s.value for s in run_scorer(scorer, items, judge)] == [0.8, 0.2]
    assert len(judge.prompts) == 2 and judge.prompts[0].startswith("Q: 2*3?\n2 * 3 = 6\n") and "Yes or No" in judge.prompts[0]
    lp = StepLogprob(StepLogprob.Params()).score([ScoreItem("p", _branch("a b"))])[0]
    assert lp.value == pytest.approx(2.718281828 ** (-0.25))


def test_an_unstated_answer_can_be_read_as_the_last_number():
    from ttc_plugins.scoring.verifiers import final_number

    assert final_number("46 - 28 = 18") == "18" and final_number("so 3 + 4 = 7\nThe answer is 7.") == "7"
    assert final_number("Let me think.") is None
    items = [OracleItem("p", _branch("46 - 28 = 18\n"), "18"), OracleItem("p", _branch("46 - 28 = 7\n"), "18")]
    assert [s.value for s in IntegerAnswer(IntegerAnswer.Params()).score(items)] == [0.0, 0.0]
    assert [s.value for s in IntegerAnswer(IntegerAnswer.Params(last_number=True)).score(items)] == [1.0, 0.0]
