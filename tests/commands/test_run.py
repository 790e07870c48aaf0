"""``ttc run``: argument parsing, parameter validation, the report, and the whole command on the
reference HF engine (``--engine hf``) with the tiny random model."""

from __future__ import annotations

import json

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from ttc_plugins.commands.run import (
    DEFAULT_STEP_PARAMS,
    MethodReport,
    greedy_config,
    parse_params,
    report_table,
    run,
    search_config,
    summarize,
    verdict,
)
from ttc_plugins.errors import TTCParamError
from ttc_plugins.manager import TTCPluginManager
from ttc_plugins.problems import load_problems
from ttc_plugins.search.result import SearchCounters, SearchResult


@pytest.fixture(scope="module")
def pm():
    return TTCPluginManager(load_entrypoints=False)


@pytest.fixture(scope="module")
def app():
    a = typer.Typer(add_completion=False)
    a.command()(run)
    return a


# -- --param ------------------------------------------------------------------------------------
def test_param_values_are_json_or_text():
    got = parse_params(["max_steps=6", "temperature=0.5", "stop_on_answer=false", "stop=[\"END\"]",
                        "scorer_args={\"yes\": \" Y\"}", "step_delimiter=\\n", "aggregation=min", "empty="])
    assert got == {"max_steps": 6, "temperature": 0.5, "stop_on_answer": False, "stop": ["END"],
                   "scorer_args": {"yes": " Y"}, "step_delimiter": "\n", "aggregation": "min", "empty": ""}


@pytest.mark.parametrize("item, message", [
    ("max_steps", "expected key=value"),
    ("=3", "expected key=value"),
    ("max-steps=3", "not a parameter name"),
    ("ets.kv_weight=3", "not a parameter name"),  # strategy scopes are ttc bench's only
])
def test_malformed_params_are_rejected(item, message):
    with pytest.raises(typer.BadParameter, match=message):
        parse_params([item])


def test_a_param_given_twice_is_rejected():
    with pytest.raises(typer.BadParameter, match="given twice"):
        parse_params(["width=2", "width=3"])


# -- validation before any engine ------------------------------------------------------------
def test_search_config_layers_defaults_options_and_params(pm):
    cfg = search_config("beam", 4, "logprob", 7, {"max_steps": 3, "temperature": 0.5}, pm=pm)
    assert cfg == {**DEFAULT_STEP_PARAMS, "strategy": "beam", "width": 4, "seed": 7, "scorer": "logprob",
                   "max_steps": 3, "temperature": 0.5}
    assert "scorer" not in search_config("beam", 4, None, 0, {}, pm=pm)  # the strategy's default


@pytest.mark.parametrize("strategy, scorer, params, field", [
    ("nope", None, {}, "ttc.search"),
    ("beam", "no_such_scorer", {}, "ttc.search.scorer"),
    ("beam", None, {"max_steps": 0}, "ttc.search.max_steps"),
    ("beam", None, {"no_such_field": 1}, "ttc.search"),
])
def test_invalid_search_parameters_fail_naming_the_field(pm, strategy, scorer, params, field):
    with pytest.raises(TTCParamError) as info:
        search_config(strategy, 4, scorer, 0, params, pm=pm)
    assert info.value.field.startswith(field)


def test_strategy_cannot_be_smuggled_through_param(pm):
    with pytest.raises(typer.BadParameter, match="--strategy"):
        search_config("beam", 4, None, 0, {"strategy": "mcts"}, pm=pm)


def test_greedy_keeps_the_step_settings(pm):
    cfg = search_config("beam", 4, None, 3, {"max_steps": 5, "step_delimiter": "\n\n", "temperature": 0.9}, pm=pm)
    g = greedy_config(cfg, pm=pm)
    assert g["strategy"] == "best_of_n" and g["width"] == 1 and g["temperature"] == 0.0
    assert (g["max_steps"], g["step_delimiter"], g["seed"]) == (5, "\n\n", 3)


# -- the report -------------------------------------------------------------------------------
def _result(answer, text="", **counters):
    return SearchResult(request_id="r", strategy="beam", answer=answer, text=text, chosen_branch_id=None,
                        chosen_path=[], scores=[], path_score=None, counters=SearchCounters(**counters))


def test_summarize_checks_answers_and_sums_counters():
    probs = load_problems("arith", n=3, seed=0)
    results = [
        _result(probs[0].answer, tokens_generated=10, tokens_reused=128, tokens_computed=40, model_calls=4,
                engine_rounds=3, peak_kv_tokens=90),
        _result(None, text=f"so the total. The answer is {probs[1].answer}.", tokens_generated=5, tokens_computed=20,
                model_calls=1, engine_rounds=5, peak_kv_tokens=50),
        _result(str(int(probs[2].answer) + 1), tokens_generated=1, tokens_computed=2, model_calls=1, engine_rounds=1),
    ]
    rep = summarize("beam w=4", probs, results, 2.5, 7)
    assert (rep.correct, rep.n, rep.accuracy) == (2, 3, pytest.approx(2 / 3))
    assert rep.correct_ids == [probs[0].id, probs[1].id]
    assert (rep.tokens_generated, rep.tokens_reused, rep.tokens_computed, rep.model_calls) == (16, 128, 62, 6)
    assert (rep.engine_rounds, rep.peak_kv_tokens, rep.peak_kv_blocks, rep.wall_s) == (5, 90, 7, 2.5)
    assert rep.to_json()["accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        summarize("x", probs, results[:2], 1.0, 0)


def test_report_table_fits_80_columns():
    reps = [MethodReport("greedy", 60, 21, 1_800, 0, 9_400, 60, 6, 3, 120, 12.25),
            MethodReport("particle_filter k=16", 60, 39, 31_900, 41_280, 60_600, 940, 9, 212, 300, 410.0)]
    console = Console(record=True, width=80)
    console.print(report_table(reps, title="ttc run: add-sub (test) n=60 seed=0, smollm2-135m-instruct on vllm"))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for needle in ("greedy", "particle_filter k=16", "21/60 [24-48%]", "39/60 [52-76%]", "31,900", "60,600",
                   "212", "12.2 s", "410.0 s"):
        assert needle in text, needle


def test_report_title_stays_on_one_line_over_a_narrow_table():
    title = "ttc run: compare (test) n=60 seed=0, smollm2-135m-instruct on vllm"
    console = Console(record=True, width=80)
    console.print(report_table([MethodReport("mcts k=4", 60, 30, 8_756, 0, 19_892, 60, 6, 3, 384, 52.2)], title=title))
    assert title in console.export_text()


def _report(method, correct_ids, n=40, tokens=1000, wall=10.0):
    return MethodReport(method, n, len(correct_ids), tokens, 0, tokens, 1, 1, 1, 1, wall,
                        correct_ids=list(correct_ids))


def test_the_verdict_counts_a_lift_only_when_the_paired_test_says_so():
    greedy = _report("greedy", [f"p{i}" for i in range(10)])
    better = _report("beam k=4", [f"p{i}" for i in range(25)], tokens=4200, wall=35.0)
    line = verdict(greedy, better)
    assert line.startswith("verdict: beam k=4 beats greedy by +38 points (25/40 vs 10/40, paired p=")
    assert "4.2x the tokens and 3.5x the time" in line
    same = _report("beam k=4", [f"p{i}" for i in range(2, 13)])  # 11 vs 10, mostly the same problems
    assert verdict(greedy, same).startswith("verdict: no significant difference: beam k=4 +3 points")
    worse = _report("beam k=4", [])
    assert "worse than greedy by 25 points" in verdict(greedy, worse)


# -- the command ------------------------------------------------------------------------------
def test_bad_params_exit_with_a_usage_error(app):
    res = CliRunner().invoke(app, ["--param", "oops", "--engine", "hf"])
    assert res.exit_code == 2 and "key=value" in res.output
    res = CliRunner().invoke(app, ["--problems", "nope", "--engine", "hf"])
    assert res.exit_code == 2 and "unknown problem set" in res.output


def test_an_oracle_scorer_is_refused(app, tmp_path):
    res = CliRunner().invoke(app, ["--engine", "hf", "--model", str(tmp_path), "--scorer", "integer_answer"],
                             env={"COLUMNS": "250"})
    assert res.exit_code == 2 and "--scorer" in res.output and "oracle" in res.output


def test_invalid_search_params_fail_before_the_engine_starts(app, tmp_path):
    res = CliRunner().invoke(app, ["--engine", "hf", "--model", str(tmp_path), "--param", "max_steps=0"])
    assert isinstance(res.exception, TTCParamError) and res.exception.field == "ttc.search.max_steps"


def test_run_on_the_hf_engine_end_to_end(app, tmp_path):
    pytest.importorskip("transformers")
    from ttc_plugins.testing import build_tiny_llama

    model = build_tiny_llama()
    out = tmp_path / "run.json"
    res = CliRunner().invoke(app, [
        "--engine", "hf", "--model", str(model), "--problems", "arith", "--n", "2", "--seed", "1",
        "--strategy", "beam", "--width", "2",
        "--param", "max_steps=2", "--param", "max_step_tokens=4", "--param", "max_total_tokens=8",
        "--json", str(out),
    ], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "greedy" in res.output and "beam k=2" in res.output and "verdict: " in res.output
    assert "2/2" in res.output and "4/2" not in res.output  # each progress bar counts its own searches
    doc = json.loads(out.read_text())
    assert doc["config"]["search"]["width"] == 2 and doc["config"]["greedy"]["temperature"] == 0.0
    assert doc["config"]["search"]["scorer"] == "arith_steps" and doc["config"]["split"] == "test"
    assert doc["verdict"].startswith("verdict: ") and doc["verdict"] in res.output.replace("\n", " ") or \
        doc["verdict"][:40] in res.output
    greedy, beam = doc["methods"]["greedy"], doc["methods"]["beam k=2"]
    probs = load_problems("arith", n=2, seed=1, split="test")
    assert [p["id"] for p in doc["problems"]] == [p.id for p in probs]
    for m in (greedy, beam):
        assert m["n"] == 2 and 0 <= m["correct"] <= 2 and m["tokens_generated"] > 0 and m["model_calls"] > 0
        assert m["tokens_computed"] >= m["tokens_generated"] and m["peak_kv_blocks"] > 0 and m["wall_s"] > 0
    # greedy is one path per problem of at most 2 steps x 4 tokens; beam keeps 2 paths
    assert greedy["tokens_generated"] <= 2 * 8 < beam["tokens_generated"] + 2 * 8
    assert beam["model_calls"] > greedy["model_calls"]


def test_majority_vote_gets_no_default_scorer(pm):
    from ttc_plugins.commands.run import RUN_DEFAULTS

    assert pm.strategies.get("self_consistency").default_scorer is None
    assert RUN_DEFAULTS["scorer"] == "arith_steps" and not pm.scorers.get(RUN_DEFAULTS["scorer"]).oracle
