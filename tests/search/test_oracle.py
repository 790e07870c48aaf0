"""The reference answer reaches oracle scorers only (issue #16: a search row's scorer must not be
able to read the gold answer; oracle rows are the pass@k ceiling)."""

from __future__ import annotations

import dataclasses

import pytest

from ttc_plugins import hookimpl
from ttc_plugins.errors import TTCParamError
from ttc_plugins.manager import get_plugin_manager
from ttc_plugins.scoring.base import OracleItem, Scorer, ScoreItem
from ttc_plugins.search import SearchPrompt, run_search
from ttc_plugins.search.base import SearchState
from ttc_plugins.testing.scripted_engine import ScriptedEngine

from search_support import PROMPT, build_pm, trap_world


def test_a_score_item_cannot_carry_a_reference():
    assert "reference" not in {f.name for f in dataclasses.fields(ScoreItem)}
    assert "reference" in {f.name for f in dataclasses.fields(OracleItem)}
    with pytest.raises(TypeError):
        ScoreItem("p", None, "42")  # type: ignore[call-arg]


def test_a_strategy_cannot_read_the_reference():
    import inspect

    assert "reference" not in inspect.signature(SearchState).parameters


def test_the_registered_oracles_are_exactly_the_gold_answer_verifiers():
    pm = get_plugin_manager()
    oracles = {name for name in pm.scorers.names() if pm.scorers.get(name).oracle}
    assert oracles == {"integer_answer", "math_answer"}


class _Spy(Scorer):
    seen: list = []

    def score(self, items):
        type(self).seen.extend(items)
        return [self._score(0.5) for _ in items]


class SpyScorer(_Spy):
    name = "spy"
    seen: list = []


class SpyOracle(_Spy):
    name = "spy_oracle"
    oracle = True
    seen: list = []


class _Register:
    @hookimpl
    def ttc_register_scorers(self, register):
        register(SpyScorer)
        register(SpyOracle)


def _search(scorer: str, reference: str | None):
    pm, _ = build_pm()
    pm.register(_Register(), name="spy-scorers")
    params = {"strategy": "beam", "scorer": scorer, "width": 2, "expand": 2, "step_delimiter": "\n",
              "temperature": 1.0, "seed": 0}
    return run_search(ScriptedEngine(trap_world()), [SearchPrompt(PROMPT, reference=reference, request_id="q")],
                      params, pm=pm)


def test_the_driver_gives_the_reference_to_oracles_only():
    SpyScorer.seen.clear()
    SpyOracle.seen.clear()
    _search("spy", "16")
    _search("spy_oracle", "16")
    assert SpyScorer.seen and all(type(it) is ScoreItem and not hasattr(it, "reference") for it in SpyScorer.seen)
    assert SpyOracle.seen and all(isinstance(it, OracleItem) and it.reference == "16" for it in SpyOracle.seen)


def test_an_oracle_without_a_reference_is_refused_naming_the_field():
    with pytest.raises(TTCParamError) as err:
        _search("integer_answer", None)
    assert err.value.field == "ttc.search.scorer" and "oracle" in str(err.value)
