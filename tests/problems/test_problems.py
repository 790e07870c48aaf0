from __future__ import annotations

import pytest

from ttc_plugins.problems import PROBLEM_SETS, SPLITS, load_problems, split_of
from ttc_plugins.scoring.step_checker import check_equations


@pytest.mark.parametrize("name", sorted(PROBLEM_SETS))
def test_sets_are_seeded_and_self_consistent(name):
    a, b, c = load_problems(name, n=50, seed=0), load_problems(name, n=50, seed=0), load_problems(name, n=50, seed=1)
    assert a == b and a != c and len({p.id for p in a}) == 50
    assert len({p.question for p in a}) > 45  # varied
    for p in a:
        assert p.check("\n".join(p.solution)) and p.check(p.answer)
        assert not p.check(f"The answer is {int(p.answer) + 1}.") and not p.check("no answer here")
        for step in p.solution[:-1]:  # every reference step is one checkable, correct calculation
            eqs = check_equations(step)
            assert eqs and all(ok for _, ok in eqs), step
        assert len(p.solution) >= 2 and p.prompt.endswith("Solution:\n") and p.question in p.prompt
        sp = p.search_prompt()
        assert sp.reference == p.answer and sp.request_id == p.id


def test_arith_has_multi_step_chains_and_modular_answers_are_residues():
    assert all(len(p.solution) >= 4 for p in load_problems("arith", n=30))
    assert all(2 <= len(p.solution) <= 3 for p in load_problems("arith-short", n=30))
    for p in load_problems("modular", n=30):
        assert 0 <= int(p.answer) < p.meta["modulus"]


def test_unknown_set_names_the_choices():
    with pytest.raises(KeyError, match="arith"):
        load_problems("nope")


@pytest.mark.parametrize("name", ["add-sub", "add-sub-small", "compare", "units", "digit-sum", "word-1op", "arith"])
def test_splits_are_disjoint_seeded_and_large_enough(name):
    splits = {s: load_problems(name, n=200, seed=0, split=s) for s in SPLITS}
    questions = {s: {p.question for p in ps} for s, ps in splits.items()}
    assert all(len(q) == 200 for q in questions.values())  # 200 distinct problems in each
    assert not (questions["train"] & questions["dev"]) and not (questions["train"] & questions["test"])
    assert not (questions["dev"] & questions["test"])
    assert all(split_of(p.question) == s for s, ps in splits.items() for p in ps)
    assert load_problems(name, n=50, seed=0, split="test") == splits["test"][:50]  # a prefix: n grows, rows stay
    assert load_problems(name, n=20, seed=1, split="test") != splits["test"][:20]


def test_a_split_too_small_for_n_is_a_clear_error():
    with pytest.raises(ValueError, match="distinct test problems"):
        load_problems("units", n=5_000, split="test")


def test_a_completion_that_states_no_answer_is_read_by_its_last_number():
    (p,) = load_problems("add-sub", n=1, seed=0, split="test")
    a, b = p.solution[0].split(" = ")[0], p.answer
    assert p.check(f"{a} = {b}") and not p.check(f"{a} = {int(b) + 1}")
    assert p.check(f"{a} = {int(b) + 1}\nThe answer is {b}.")  # a stated answer wins
