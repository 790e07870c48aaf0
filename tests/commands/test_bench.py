"""``ttc bench``: argument validation (errors name the option, before any engine starts) and the
whole command on the reference HF engine (``--engine hf``) with the tiny random model."""

from __future__ import annotations

import csv
import json

import pytest
import typer
from typer.testing import CliRunner

from ttc_plugins.commands.bench import PLOTS, bench, bench_plan, parse_names, parse_widths
from ttc_plugins.commands.run import parse_params
from ttc_plugins.manager import TTCPluginManager
from ttc_plugins.problems import load_problems


@pytest.fixture(scope="module")
def app():
    a = typer.Typer(add_completion=False)
    a.command()(bench)
    return a


# -- arguments ----------------------------------------------------------------------------------
def test_lists_and_widths_parse():
    assert parse_names(" arith , modular", "--problems") == ["arith", "modular"]
    assert parse_widths("4,2,8") == [2, 4, 8]


@pytest.mark.parametrize("text, message", [("2,x", "'x' is not an integer"), ("0", "must be >= 1"),
                                           ("2,2", "given twice"), ("2,", "comma-separated")])
def test_bad_widths_are_rejected(text, message):
    with pytest.raises(typer.BadParameter, match=message) as info:
        parse_widths(text)
    assert info.value.param_hint == "--widths"


def test_a_scoped_param_reaches_only_its_strategy():
    pm = TTCPluginManager(load_entrypoints=False)
    params = parse_params(["max_steps=6", "ets.kv_weight=2.5"], scoped=True)
    plan = bench_plan(["arith"], ["rebase", "ets"], [4], 0, params, pm=pm)
    by = {r.strategy: r.config for r in plan}
    assert by["ets"]["kv_weight"] == 2.5 and "kv_weight" not in by["rebase"]
    assert by["ets"]["max_steps"] == by["rebase"]["max_steps"] == by["greedy"]["max_steps"] == 6
    assert by["oracle"]["max_steps"] == 6 and "kv_weight" not in by["oracle"]
    with pytest.raises(typer.BadParameter, match="not one of --strategies"):
        bench_plan(["arith"], ["rebase"], [4], 0, params, pm=pm)
    with pytest.raises(typer.BadParameter, match="not a parameter name"):
        parse_params(["ets.kv-weight=1"], scoped=True)


def test_rows_at_the_same_k_have_the_same_token_budget():
    """Matched budgets (issue #16): every row at k may generate k x max_total_tokens per problem,
    greedy 1 x; the oracle row is best-of-k with the oracle scorer."""
    pm = TTCPluginManager(load_entrypoints=False)
    strategies = ["self_consistency", "best_of_n", "beam", "dvts", "rebase", "ets", "particle_filter", "mcts"]
    plan = bench_plan(["add-sub", "units"], strategies, [4, 8], 0, parse_params(["max_total_tokens=100"]), pm=pm)
    assert len(plan) == 2 * (1 + 2 * (len(strategies) + 1))
    for ps in ("add-sub", "units"):
        rows = [r for r in plan if r.problem_set == ps]
        (greedy,) = [r for r in rows if r.kind == "greedy"]
        assert greedy.budget == 100 and greedy.config["temperature"] == 0.0
        for k in (4, 8):
            at_k = [r for r in rows if r.width == k]
            assert {r.budget for r in at_k} == {100 * k} and len(at_k) == len(strategies) + 1
            (oracle,) = [r for r in at_k if r.kind == "oracle"]
            assert oracle.config["strategy"] == "best_of_n" and oracle.config["scorer"] == "integer_answer"
            for r in at_k:
                if r.kind == "search":
                    assert r.config.get("scorer") in (None, "arith_steps") and r.config["width"] == k
    # majority vote takes no scorer: it gets none rather than one it would ignore
    assert all("scorer" not in r.config for r in plan if r.strategy == "self_consistency")


def test_each_set_gets_its_own_path_cap_unless_param_sets_one():
    """As in ``ttc run``: a set's paths are capped at its ``path_tokens`` (compare 64, arith 320)
    and budgets follow; ``--param max_total_tokens`` overrides it for every set."""
    from ttc_plugins.problems import PROBLEM_SETS

    pm = TTCPluginManager(load_entrypoints=False)
    plan = bench_plan(["compare", "arith"], ["best_of_n"], [4], 0, {}, pm=pm)
    for ps in ("compare", "arith"):
        cap = PROBLEM_SETS[ps].path_tokens
        rows = [r for r in plan if r.problem_set == ps]
        assert {r.config["max_total_tokens"] for r in rows} == {cap}
        assert sorted(r.budget for r in rows) == [cap, 4 * cap, 4 * cap]
    assert PROBLEM_SETS["compare"].path_tokens != PROBLEM_SETS["arith"].path_tokens
    plan = bench_plan(["compare", "arith"], ["best_of_n"], [4], 0, {"max_total_tokens": 100}, pm=pm)
    assert {r.config["max_total_tokens"] for r in plan} == {100}


@pytest.mark.parametrize("kwargs, option, needle", [
    ({"scorer": "integer_answer"}, "--scorer", "oracle"),
    ({"oracle": "arith_steps"}, "--oracle", "not an oracle"),
    ({"scorer": "no_such"}, "--scorer", "unknown scorer"),
])
def test_an_oracle_cannot_score_a_search_row(kwargs, option, needle):
    pm = TTCPluginManager(load_entrypoints=False)
    with pytest.raises(typer.BadParameter, match=needle) as info:
        bench_plan(["add-sub"], ["beam"], [4], 0, {}, pm=pm, **kwargs)
    assert info.value.param_hint == option


@pytest.mark.parametrize("key", ["token_budget", "width", "beam.token_budget"])
def test_the_bench_owns_budget_and_width(key):
    pm = TTCPluginManager(load_entrypoints=False)
    with pytest.raises(typer.BadParameter, match="the bench sets it"):
        bench_plan(["add-sub"], ["beam"], [4], 0, {key: 3}, pm=pm)


@pytest.mark.parametrize("args, option, needle", [
    (["--strategies", "beam,no_such_strategy"], "--strategies", "unknown strategy 'no_such_strategy'"),
    (["--widths", "2,0"], "--widths", "must be >= 1"),
    (["--widths", "two"], "--widths", "not an integer"),
    (["--problems", "arith,nope"], "--problems", "unknown problem set 'nope'"),
    (["--param", "max_steps=0"], "--param", "max_steps"),
    (["--scorer", "integer_answer"], "--scorer", "oracle"),
    (["--split", "validation"], "--split", "choose one of"),
])
def test_bad_arguments_exit_with_a_usage_error_naming_the_option(app, tmp_path, args, option, needle):
    # --model is an empty directory: any engine start would fail, so these must fail before it
    res = CliRunner().invoke(app, ["--engine", "hf", "--model", str(tmp_path), "--out", str(tmp_path / "o"), *args],
                             env={"COLUMNS": "250"})
    assert res.exit_code == 2, res.output
    assert option in res.output and needle in res.output
    assert not (tmp_path / "o").exists()


# -- the command ------------------------------------------------------------------------------
def test_bench_on_the_hf_engine_end_to_end(app, tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("matplotlib")
    from ttc_plugins.testing import build_tiny_llama

    model = build_tiny_llama()
    out = tmp_path / "results"
    res = CliRunner().invoke(app, [
        "--engine", "hf", "--model", str(model), "--problems", "arith", "--n", "2", "--seed", "1",
        "--strategies", "beam", "--widths", "2",
        "--param", "max_steps=2", "--param", "max_step_tokens=4", "--param", "max_total_tokens=8",
        "--out", str(out),
    ], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output

    doc = json.loads((out / "bench.json").read_text())
    assert "--strategies beam --widths 2" in doc["command"] and doc["config"]["engine"] == "hf"
    assert "--split test" in doc["command"] and doc["config"]["split"] == "test"
    assert doc["machine"]["cpus"] and doc["config"]["engine_version"].startswith("transformers ")
    assert "load_average_start" in doc["machine"]
    assert [(r["set"], r["kind"], r["method"], r["width"], r["budget"]) for r in doc["rows"]] == [
        ("arith", "greedy", "greedy", 1, 8), ("arith", "search", "beam", 2, 16), ("arith", "oracle", "oracle", 2, 16)]
    greedy, beam, oracle = doc["rows"]
    probs = load_problems("arith", n=2, seed=1, split="test")
    for r in (greedy, beam, oracle):
        assert r["n"] == 2 and r["accuracy"] == pytest.approx(r["correct"] / 2)
        lo, hi = r["accuracy_ci95"]
        assert 0 <= lo <= r["accuracy"] <= hi <= 1 and hi - lo > 0.3  # two problems: a wide interval
        assert set(r["correct_ids"]) <= {p.id for p in probs} and len(r["correct_ids"]) == r["correct"]
        assert 0 < r["tokens_generated"] <= 2 * r["budget"] + 2 * r["width"]
        assert r["tokens_computed"] >= r["tokens_generated"] and r["model_calls"] > 0
        assert r["peak_kv_blocks"] > 0 and r["peak_kv_tokens"] > 0 and r["wall_s"] > 0
        assert 1 <= r["retained_nodes_peak"] <= r["retained_nodes_sum"]
        assert 0 < r["kv_tokens_avg"] < r["peak_kv_tokens"]  # prompt excluded, averaged over rounds
    # greedy keeps one path per problem (<= 2 steps x 4 tokens) and one node; beam keeps two paths
    assert greedy["tokens_generated"] <= 2 * 8 and greedy["retained_nodes_peak"] == 1
    assert beam["model_calls"] > greedy["model_calls"] and beam["retained_nodes_peak"] == 2
    # the oracle is pass@2: right whenever one of its two samples is
    runs = {(r["kind"], r["method"]): r["search"] for r in doc["config"]["runs"]}
    assert runs[("greedy", "greedy")]["temperature"] == 0.0 and runs[("greedy", "greedy")]["max_steps"] == 2
    assert runs[("search", "beam")]["width"] == 2 and runs[("search", "beam")]["max_step_tokens"] == 4
    assert runs[("search", "beam")]["scorer"] == "arith_steps" and runs[("search", "beam")]["token_budget"] == 16
    assert runs[("oracle", "oracle")]["scorer"] == "integer_answer"

    # the markdown table has one row per JSON row, with the same numbers
    md = (out / "bench.md").read_text()
    assert "engine: hf (transformers" in md and str(model) in md and "machine:" in md and "load average" in md
    lines = [ln for ln in md.splitlines() if ln.startswith("| arith ")]
    assert len(lines) == 3
    (best,) = [ln for ln in md.splitlines() if ln.startswith("- arith, k=2: best search beam ")]
    assert any(f"{w} beam k=2 " in best for w in ("difference:", "verdict:", ";")) and "arith beam" not in best
    assert "vs greedy" in best or "beats greedy" in best or "worse than greedy" in best
    assert f"oracle pass@2 {oracle['correct']}/2" in best
    for line, r in zip(lines, doc["rows"]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == r["kind"] and cells[2] == ("oracle pass@2" if r["kind"] == "oracle" else r["method"])
        assert cells[3:5] == [str(r["width"]), str(r["budget"])]
        assert cells[5].startswith(f"{r['correct']}/{r['n']} ") and "[" in cells[5]
        assert cells[6] == str(r["tokens_generated"])
        assert cells[7] == f"{r['tokens_computed']} ({r['tokens_reused']})"
        assert cells[8:10] == [str(r["model_calls"]), str(r["peak_kv_blocks"])]
        assert float(cells[10]) == pytest.approx(r["kv_block_seconds"], abs=0.06)
        assert cells[11] == str(r["peak_kv_tokens"])
        assert float(cells[12]) == r["peak_kv_tokens_mean"] <= r["peak_kv_tokens"]
        # without sharing every branch holds its whole sequence: never less than with sharing
        assert r["peak_kv_tokens_unshared_mean"] >= r["peak_kv_tokens_mean"]
        assert float(cells[13]) == r["kv_tokens_avg"]
        assert cells[14] == str(r["retained_nodes_peak"])
        assert float(cells[15]) == pytest.approx(r["wall_s"], abs=0.006)

    # the CSV has the same rows
    with open(out / "bench.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert [(c["kind"], c["method"], int(c["tokens_generated"]), int(c["peak_kv_blocks"])) for c in got] == \
        [(r["kind"], r["method"], r["tokens_generated"], r["peak_kv_blocks"]) for r in doc["rows"]]
    assert all(float(c["accuracy_ci95_low"]) <= float(c["accuracy"]) for c in got)

    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_a_missing_matplotlib_is_a_clear_error(monkeypatch):
    import sys

    from ttc_plugins.commands.bench import _pyplot
    from ttc_plugins.errors import TTCError

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(TTCError, match=r"matplotlib.*ttc-plugins\[bench\]"):
        _pyplot()
