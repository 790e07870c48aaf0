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
    with pytest.raises(typer.BadParameter, match="not one of --strategies"):
        bench_plan(["arith"], ["rebase"], [4], 0, params, pm=pm)
    with pytest.raises(typer.BadParameter, match="not a parameter name"):
        parse_params(["ets.kv-weight=1"], scoped=True)


@pytest.mark.parametrize("args, option, needle", [
    (["--strategies", "beam,no_such_strategy"], "--strategies", "unknown strategy 'no_such_strategy'"),
    (["--widths", "2,0"], "--widths", "must be >= 1"),
    (["--widths", "two"], "--widths", "not an integer"),
    (["--problems", "arith,nope"], "--problems", "unknown problem set 'nope'"),
    (["--param", "max_steps=0"], "--param", "max_steps"),
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
    assert doc["machine"]["cpus"] and doc["config"]["engine_version"].startswith("transformers ")
    rows = {r["method"]: r for r in doc["rows"]}
    assert [(r["set"], r["method"], r["width"]) for r in doc["rows"]] == [("arith", "greedy", 1), ("arith", "beam", 2)]
    greedy, beam = rows["greedy"], rows["beam"]
    probs = load_problems("arith", n=2, seed=1)
    for r in (greedy, beam):
        assert r["n"] == 2 and r["accuracy"] == pytest.approx(r["correct"] / 2)
        assert set(r["correct_ids"]) <= {p.id for p in probs} and len(r["correct_ids"]) == r["correct"]
        assert r["tokens_generated"] > 0 and r["tokens_computed"] >= r["tokens_generated"] and r["model_calls"] > 0
        assert r["peak_kv_blocks"] > 0 and r["peak_kv_tokens"] > 0 and r["wall_s"] > 0
        assert 1 <= r["retained_nodes_peak"] <= r["retained_nodes_sum"]
        assert 0 < r["kv_tokens_avg"] < r["peak_kv_tokens"]  # prompt excluded, averaged over rounds
    # greedy keeps one path per problem (<= 2 steps x 4 tokens) and one node; beam keeps two paths
    assert greedy["tokens_generated"] <= 2 * 8 and greedy["retained_nodes_peak"] == 1
    assert beam["model_calls"] > greedy["model_calls"] and beam["retained_nodes_peak"] == 2
    # the search configs recorded are the ones run: greedy at temperature 0, beam with the params
    runs = {r["method"]: r["search"] for r in doc["config"]["runs"]}
    assert runs["greedy"]["temperature"] == 0.0 and runs["greedy"]["max_steps"] == 2
    assert runs["beam"]["width"] == 2 and runs["beam"]["max_step_tokens"] == 4

    # the markdown table has one row per JSON row, with the same numbers
    md = (out / "bench.md").read_text()
    assert "engine: hf (transformers" in md and str(model) in md and "machine:" in md
    lines = [ln for ln in md.splitlines() if ln.startswith("| arith ")]
    assert len(lines) == 2
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        r = rows[cells[1]]
        assert cells[2] == str(r["width"]) and cells[3].startswith(f"{r['correct']}/{r['n']} ")
        assert cells[4] == str(r["tokens_generated"])
        assert cells[5].startswith(f"{r['tokens_reused']} / {r['tokens_computed']} ")
        assert cells[6:9] == [str(r["model_calls"]), str(r["peak_kv_blocks"]), str(r["peak_kv_tokens"])]
        assert float(cells[9]) == r["peak_kv_tokens_mean"] <= r["peak_kv_tokens"]
        assert float(cells[10]) == r["kv_tokens_avg"]
        assert cells[11] == str(r["retained_nodes_peak"])
        assert float(cells[12]) == pytest.approx(r["wall_s"], abs=0.006)

    # the CSV has the same rows
    with open(out / "bench.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert [(c["method"], int(c["tokens_generated"]), int(c["peak_kv_blocks"])) for c in got] == \
        [(r["method"], r["tokens_generated"], r["peak_kv_blocks"]) for r in doc["rows"]]

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
