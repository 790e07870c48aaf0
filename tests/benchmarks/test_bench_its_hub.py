"""``benchmarks/bench_its_hub.py`` hands its_hub the very judgement our searches use: its
``path_score`` of a finished text equals our ``arith_steps`` scorer's step scores aggregated with
``min`` (the search default), and its majority key is our self-consistency's. (The benchmark itself
needs its_hub and a vLLM server: not a CI dependency.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from ttc_plugins.manager import get_plugin_manager
from ttc_plugins.scoring.aggregate import aggregate
from ttc_plugins.scoring.base import ScoreItem
from ttc_plugins.types import Branch, Step

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_its_hub.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_its_hub", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _scored_by_our_search(steps: list[str]) -> float:
    """What a search with ``scorer: arith_steps, aggregation: min`` gives the path: each step is
    scored when it is the latest one, and the path is worth the minimum."""
    cls = get_plugin_manager().scorers.get("arith_steps")
    checker = cls(cls.Params())
    b = Branch(id="b", parent_id=None, prompt_token_ids=(1,))
    values = []
    for s in steps:
        b.steps.append(Step(branch_id="b", text=s, token_ids=(5,), logprob=-0.5))
        values.append(checker.score([ScoreItem("p", b)])[0].value)
    return aggregate(values, "min")


@pytest.mark.parametrize("steps", [
    ["539 - 456 = 83\n", "The answer is 539."],
    ["12 + 30 = 42\n", "42 - 5 = 36\n", "The answer is 36."],
    ["Let me think.\n", "\n", "3 * 4 = 12, and 12 + 1 = 14\n", "So 14."],
    ["No equations at all."],
])
def test_its_hub_gets_our_verifier(bench, steps):
    assert bench.path_score("".join(steps)) == pytest.approx(_scored_by_our_search(steps))


def test_its_hub_votes_on_our_answer_key(bench):
    assert bench.answer_key("18 + 3 = 21\nThe answer is 21.") == bench.answer_key("So the answer is 21.0.")
    assert bench.answer_key("The answer is 21.") != bench.answer_key("The answer is 12.")
