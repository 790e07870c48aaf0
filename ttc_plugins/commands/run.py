"""``ttc run``: solve a bundled problem set with a search strategy and compare it with greedy
decoding on the same problems, on an in-process engine.

    ttc run --problems arith --n 20 --seed 0 --strategy beam --width 4 --scorer logprob \\
            [--param max_steps=6 --param temperature=0.7 ...] [--model DIR] [--engine vllm|hf] \\
            [--json out.json]

Both methods run through :func:`ttc_plugins.search.run_search` on the same engine: greedy is
``best_of_n`` with width 1 at temperature 0 and the same step settings, so the two rows of the
report are measured the same way (tokens generated, prompt tokens reused from the prefix cache
vs computed, model calls, the engine's peak KV blocks, wall time).

The engine is ``vllm`` (in process: ``VLLM_ENABLE_V1_MULTIPROCESSING=0``, chunked prefill off so
per-branch seeds are safe) when it is installed, else ``hf`` (transformers in this process:
:class:`~ttc_plugins.search.hf_ops.HFEngineOps`). Thread counts are the engine's and torch's own
defaults; small CPU machines set ``OMP_NUM_THREADS=1`` themselves (the README's CPU recipes).
Engine output (logs, warnings, progress) goes to stderr; stdout carries the report only.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import typer
from rich.console import Console
from rich.table import Table

from .engine_env import default_engine_name, prepare_engine_env
from .engine_output import engine_output_to_stderr
from .. import hookimpl
from ..types import KVStats
from .confidence import paired_p_value, wilson_interval

__all__ = [
    "DEFAULT_STEP_PARAMS",
    "MethodReport",
    "RunEngine",
    "greedy_config",
    "load_split",
    "parse_params",
    "report_table",
    "run",
    "search_config",
    "solve",
    "summarize",
]

# Step settings suited to the bundled problem sets (one calculation per line, then
# "The answer is N."); any of them can be overridden with --param.
DEFAULT_STEP_PARAMS: dict[str, Any] = {
    "step_delimiter": "\n",
    "max_step_tokens": 48,
    "max_steps": 10,
    "max_total_tokens": 320,
    # a path scores as its worst step: one wrong calculation sinks it (what a process verifier is for)
    "aggregation": "min",
}
VLLM_MAX_MODEL_LEN = 2048
# room for the searches' branches held in the engine between rounds: a width-8 search holds about
# 8 blocks (128 tokens each on CPU) beside its prompt; 4 GiB is ~730 such blocks of SmolLM2 in
# float32 (46 KB a token). When they do not fit, the engine queues searches; it does not fail.
VLLM_KV_CACHE_BYTES = 4 * 2**30


class RunEngine(str, Enum):
    vllm = "vllm"
    hf = "hf"


# -- arguments ----------------------------------------------------------------------------------
def _value(text: str) -> Any:
    """A --param value: JSON when it parses (numbers, true/false, null, lists, objects, quoted
    strings), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_params(items: Sequence[str], *, scoped: bool = False) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict. Values are JSON when they parse, else strings; escapes
    such as ``\\n`` in plain strings are decoded (``--param step_delimiter=\\n``). With
    ``scoped``, a key may be ``strategy.key`` (kept as such; the caller applies it to that
    strategy only)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise typer.BadParameter(f"{item!r}: expected key=value", param_hint="--param")
        parts = key.split(".", 1) if scoped else [key]
        if not all(part.replace("_", "").isalnum() for part in parts):
            raise typer.BadParameter(f"{item!r}: {key!r} is not a parameter name", param_hint="--param")
        if key in out:
            raise typer.BadParameter(f"{key!r} given twice", param_hint="--param")
        value = _value(raw)
        if isinstance(value, str) and "\\" in value and value.isascii():
            value = value.encode("utf-8").decode("unicode_escape")
        out[key] = value
    return out


def load_split(name: str, n: int, seed: int, split: str) -> list[Any]:
    """``--problems`` / ``--n`` / ``--seed`` / ``--split`` of ``ttc run`` and ``ttc bench``: the
    problems, or a usage error naming the option (``all``: the set's unsplit stream)."""
    from ..problems import SPLITS, load_problems

    if split not in (*SPLITS, "all"):
        raise typer.BadParameter(f"{split!r}: choose one of {', '.join(SPLITS)}, all", param_hint="--split")
    try:
        return load_problems(name, n=n, seed=seed, split=None if split == "all" else split)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="--problems") from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--n") from None


def search_config(strategy: str, width: int, scorer: Optional[str], seed: int, params: dict[str, Any],
                  *, pm: Any) -> dict[str, Any]:
    """The ``ttc.search`` object for the strategy row, validated now (a bad strategy, scorer or
    parameter fails before any engine starts, naming the field)."""
    from ..search.driver import resolve_search

    cfg: dict[str, Any] = {"strategy": strategy, **DEFAULT_STEP_PARAMS, "width": width, "seed": seed}
    if scorer is not None:
        cfg["scorer"] = scorer
    for key in ("strategy",):
        if key in params:
            raise typer.BadParameter(f"use --{key} instead of --param {key}=...", param_hint="--param")
    cfg.update(params)
    resolve_search(pm, cfg)
    return cfg


def greedy_config(cfg: dict[str, Any], *, pm: Any) -> dict[str, Any]:
    """Greedy decoding with the strategy's step settings: best_of_n, width 1, temperature 0."""
    from ..search.driver import resolve_search

    keep = ("step_delimiter", "max_step_tokens", "max_steps", "max_total_tokens", "stop", "stop_on_answer")
    g = {"strategy": "best_of_n", "width": 1, "temperature": 0.0, "scorer": "logprob", "seed": cfg.get("seed", 0)}
    g.update({k: cfg[k] for k in keep if k in cfg})
    resolve_search(pm, g)
    return g


# -- measuring ----------------------------------------------------------------------------------
@dataclass
class MethodReport:
    """One row of the report: a method's accuracy and cost over the problems."""

    method: str
    n: int
    correct: int
    tokens_generated: int
    tokens_reused: int
    tokens_computed: int
    model_calls: int
    engine_rounds: int
    peak_kv_blocks: int
    peak_kv_tokens: int
    wall_s: float
    kv_block_seconds: float = 0.0
    answers: list[Optional[str]] = field(default_factory=list)
    correct_ids: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["accuracy"] = self.accuracy
        return d


def summarize(method: str, problems: Sequence[Any], results: Sequence[Any], wall_s: float,
              peak_kv_blocks: int, kv_block_seconds: float = 0.0) -> MethodReport:
    """Score ``results`` (one SearchResult per problem, same order) and sum their counters;
    ``peak_kv_blocks`` / ``kv_block_seconds`` are the engine's, read during the run."""
    if len(problems) != len(results):
        raise ValueError(f"{len(results)} results for {len(problems)} problems")
    correct_ids = [p.id for p, r in zip(problems, results) if p.check(r.answer if r.answer is not None else r.text)]
    c = [r.counters for r in results]
    return MethodReport(
        method=method, n=len(problems), correct=len(correct_ids),
        tokens_generated=sum(x.tokens_generated for x in c), tokens_reused=sum(x.tokens_reused for x in c),
        tokens_computed=sum(x.tokens_computed for x in c), model_calls=sum(x.model_calls for x in c),
        engine_rounds=max((x.engine_rounds for x in c), default=0), peak_kv_blocks=peak_kv_blocks,
        peak_kv_tokens=max((x.peak_kv_tokens for x in c), default=0), wall_s=wall_s,
        kv_block_seconds=round(kv_block_seconds, 1), answers=[r.answer for r in results], correct_ids=correct_ids,
    )


def report_table(reports: Sequence[MethodReport], *, title: str = "ttc run") -> Table:
    """The report, narrow enough for an 80-column terminal: accuracy with its 95% interval and the
    costs a user compares (the other counters are in ``--json``)."""
    from rich import box

    # at least as wide as its title, so the title stays on one line (rich wraps it at the table's width)
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  min_width=min(len(title), 80))
    for col in ("method", "correct [95% CI]", "tokens", "computed", "KV blocks", "time"):
        table.add_column(col, justify="left" if col == "method" else "right", no_wrap=True)
    for r in reports:
        lo, hi = wilson_interval(r.correct, r.n)
        table.add_row(r.method, f"{r.correct}/{r.n} [{100 * lo:.0f}-{100 * hi:.0f}%]", f"{r.tokens_generated:,}",
                      f"{r.tokens_computed:,}", str(r.peak_kv_blocks), f"{r.wall_s:.1f} s")
    return table


def verdict(greedy: MethodReport, search: MethodReport) -> str:
    """One line: did the search beat greedy on these problems, and at what cost. The lift counts
    only when the paired exact test (same problems) says p < 0.05."""
    g, s = set(greedy.correct_ids), set(search.correct_ids)
    p = paired_p_value(len(s - g), len(g - s))
    points = 100 * (search.accuracy - greedy.accuracy)
    tokens = search.tokens_generated / max(1, greedy.tokens_generated)
    time_ratio = search.wall_s / greedy.wall_s if greedy.wall_s > 0 else float("inf")
    if p < 0.05 and points > 0:
        head = f"{search.method} beats greedy by {points:+.0f} points"
    elif p < 0.05:
        head = f"{search.method} is worse than greedy by {-points:.0f} points"
    else:
        head = f"no significant difference: {search.method} {points:+.0f} points vs greedy"
    return (f"verdict: {head} ({search.correct}/{search.n} vs {greedy.correct}/{greedy.n}, paired p={p:.2g}) "
            f"for {tokens:.1f}x the tokens and {time_ratio:.1f}x the time")


class _Observed:
    """EngineOps proxy that reports each engine call to ``on_call`` (for the progress display)."""

    def __init__(self, ops: Any, on_call: Callable[[str, int], None]):
        self.ops, self.on_call = ops, on_call
        self.name = ops.name
        self.reward_models = getattr(ops, "reward_models", {})

    def encode(self, text):
        return self.ops.encode(text)

    def run(self, coro):
        return self.ops.run(coro)

    async def aextend(self, requests):
        out = await self.ops.aextend(requests)
        self.on_call("extend", sum(len(s.token_ids) for steps in out for s in steps))
        return out

    async def ascore_logprobs(self, pairs):
        out = await self.ops.ascore_logprobs(pairs)
        self.on_call("score", 0)
        return out

    async def averify_prob(self, requests):
        out = await self.ops.averify_prob(requests)
        self.on_call("verify", 0)
        return out

    async def aembed(self, texts):
        out = await self.ops.aembed(texts)
        self.on_call("embed", 0)
        return out

    def kv_stats(self):
        return self.ops.kv_stats()


class _FinishCounter:
    """A plugin counting ``ttc_request_finished`` calls (one per finished search)."""

    def __init__(self, callback: Callable[[], None]):
        self.callback = callback

    @hookimpl
    def ttc_request_finished(self, ctx, report):
        self.callback()


def solve(ops: Any, problems: Sequence[Any], config: dict[str, Any], *, pm: Any, prompt: Callable[[Any], str],
          label: str, progress: Any = None) -> tuple[list[Any], float, KVStats]:
    """Run one method over every problem in one concurrent batch of searches on ``ops`` (a fresh
    EngineOps, so its KV figures are this run's); returns (results, wall seconds, the engine's KV
    stats: peak blocks, block-seconds)."""
    from ..search.driver import SearchPrompt, run_search

    task = progress.add_task(label, total=len(problems)) if progress is not None else None
    state = {"rounds": 0, "tokens": 0}

    def on_call(kind: str, tokens: int) -> None:
        state["rounds"] += kind == "extend"
        state["tokens"] += tokens
        if progress is not None:
            progress.update(task, description=f"{label}: round {state['rounds']}, {state['tokens']:,} tokens")

    counter_name = None
    if progress is not None:
        counter = _FinishCounter(lambda: progress.advance(task))
        counter_name = pm.register(counter, name=f"ttc-run-progress-{label}-{id(counter)}")
    items = [SearchPrompt(text=prompt(p), reference=p.answer, request_id=f"{label}:{p.id}") for p in problems]
    t0 = time.perf_counter()
    try:
        results = run_search(_Observed(ops, on_call), items, config, pm=pm)
    finally:
        if counter_name is not None:
            pm.unregister(counter_name)
    wall = time.perf_counter() - t0
    return results, wall, ops.kv_stats()


# -- engines ------------------------------------------------------------------------------------
def _open_engine(engine: RunEngine, model: Path, pm: Any, fork: bool = True) -> tuple[Callable[[], Any], Any]:
    """(a factory of fresh EngineOps on one loaded engine, the tokenizer). With ``fork`` vLLM runs
    the TTC scheduler: a search's branches stay in the engine between rounds and children fork
    in place (no re-prefill of the prefix)."""
    if engine is RunEngine.vllm:
        try:
            from vllm import LLM
        except Exception as exc:  # pragma: no cover - depends on the install
            from ..errors import TTCError

            raise TTCError(f"--engine vllm: cannot import vllm ({type(exc).__name__}: {exc})") from None
        from ..vllm_backend.frontend import BEAM_SCHEDULER
        from ..vllm_backend.search_ops import VLLMEngineOps, llm_kwargs

        import torch

        # CPUs without AVX512-BF16 run bf16 about 2x slower than float32 (SmolLM2-135M, greedy
        # 10 x 48 tokens on this project's 2-core box: 16.3 s bf16 vs 8.0 s float32).
        dtype = "auto" if torch.cuda.is_available() else "float32"
        extra = {"scheduler_cls": BEAM_SCHEDULER} if fork else {}
        llm = LLM(**llm_kwargs(str(model), max_model_len=VLLM_MAX_MODEL_LEN, dtype=dtype,
                               kv_cache_memory_bytes=VLLM_KV_CACHE_BYTES, **extra))
        return (lambda: VLLMEngineOps(llm, pm=pm)), llm.get_tokenizer()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..search.hf_ops import HFEngineOps

    tok = AutoTokenizer.from_pretrained(str(model), local_files_only=True)
    lm = AutoModelForCausalLM.from_pretrained(str(model), local_files_only=True, dtype=torch.float32)
    return (lambda: HFEngineOps(lm, tok, pm=pm)), tok


def _prompter(tokenizer: Any, chat: bool) -> Callable[[Any], str]:
    if chat and getattr(tokenizer, "chat_template", None):
        def render(p):
            return tokenizer.apply_chat_template([{"role": "user", "content": p.prompt}], add_generation_prompt=True,
                                                 tokenize=False)
        return render
    return lambda p: p.prompt


# -- the command --------------------------------------------------------------------------------
def start_engine(engine: RunEngine, model: Optional[Path], pm: Any, *, raw: bool = False, fork: bool = True
                 ) -> tuple[Path, Callable[[], Any], Callable[[Any], str], float]:
    """Load one engine for a command: ``(model dir, a factory of fresh EngineOps, the problem ->
    prompt function, seconds it took)``. ``model=None`` is the default model (prepared on first use)."""
    prepare_engine_env(engine.value)
    if model is None:
        from ..model import default_model_path

        model = default_model_path()
    t_load = time.perf_counter()
    with Console(stderr=True).status(f"starting {engine.value} on {model.name}"):
        make_ops, tokenizer = _open_engine(engine, model, pm, fork=fork)
    return model, make_ops, _prompter(tokenizer, chat=not raw), time.perf_counter() - t_load


# What the measurements chose (benchmarks/results/: families-smollm2.md, value-smollm2-k4/,
# value-smollm2-dev-t03/, value-smollm2-dev-t03-mcts/, value-smollm2-t03*/): a family the default
# model partly solves; its sampling temperature, chosen on the dev split (0.8 sinks this model's
# samples); and the search there that never reads the answer and lifts the most per token, chosen on
# the dev split too: MCTS at width 4 scored by the calculator verifier (47/100 vs best-of-4's 38/100
# and greedy's 17/100, for 0.76x best-of-4's tokens). The verdict line says whatever the run
# measures; docs/benchmarks/value.md has the tables.
RUN_DEFAULTS: dict[str, Any] = {"problems": "compare", "n": 60, "strategy": "mcts", "width": 4,
                                "scorer": "arith_steps", "temperature": 0.3}


def run(
    problems: str = typer.Option(RUN_DEFAULTS["problems"], "--problems", "-p", help="Bundled problem set."),
    n: int = typer.Option(RUN_DEFAULTS["n"], "--n", min=1, help="Number of problems."),
    split: str = typer.Option("test", "--split", help="Problem split: train, dev, test (disjoint) or all."),
    seed: int = typer.Option(0, "--seed", min=0, help="Problem-set seed (also the search seed)."),
    strategy: str = typer.Option(RUN_DEFAULTS["strategy"], "--strategy", "-s",
                                 help="Registered search strategy (listed below)."),
    width: int = typer.Option(RUN_DEFAULTS["width"], "--width", "-w", min=1, help="Samples / beams / particles."),
    scorer: Optional[str] = typer.Option(None, "--scorer", help="Registered scorer (listed below); default: "
                                         f"{RUN_DEFAULTS['scorer']} for strategies that take one."),
    param: list[str] = typer.Option([], "--param", help="Extra search parameter key=value (repeatable); "
                                    f"defaults: temperature={RUN_DEFAULTS['temperature']}, max_total_tokens: the "
                                    "problem set's."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model directory (default: the default model)."),
    engine: Optional[RunEngine] = typer.Option(None, "--engine", "-e", help="Default: vllm if installed, else hf."),
    fork: bool = typer.Option(True, "--fork/--no-fork", help="vLLM: run the TTC scheduler, so searches hold "
                              "their branches in the engine between rounds and fork them in place."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report to this JSON file."),
    no_greedy: bool = typer.Option(False, "--no-greedy", help="Skip the greedy baseline."),
    raw: bool = typer.Option(False, "--raw", help="Send problems without the chat template."),
) -> None:
    """Solve N seeded problems with a search strategy and with greedy decoding; print accuracy, cost
    and a one-line verdict."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..manager import get_plugin_manager
    from ..problems import PROBLEM_SETS

    params = parse_params(param)
    probs = load_split(problems, n, seed, split)
    params.setdefault("max_total_tokens", PROBLEM_SETS[problems].path_tokens)
    params.setdefault("temperature", RUN_DEFAULTS["temperature"])
    pm = get_plugin_manager()
    if scorer is None and strategy in pm.strategies.names() and pm.strategies.get(strategy).default_scorer:
        scorer = RUN_DEFAULTS["scorer"]  # majority vote / first finish need none and get none
    if scorer in pm.scorers.names() and pm.scorers.get(scorer).oracle:
        # a search that reads the answer is not a search a user can run; its verdict would lie
        raise typer.BadParameter(f"{scorer!r} reads the reference answer (an oracle); ttc bench reports it as "
                                 "the oracle pass@k row", param_hint="--scorer")
    cfg = search_config(strategy, width, scorer, seed, params, pm=pm)
    greedy = None if no_greedy else greedy_config(cfg, pm=pm)
    engine = engine or RunEngine(default_engine_name())
    if model is not None and not (model / "config.json").is_file():
        raise typer.BadParameter(f"{model}: not a model directory (no config.json)", param_hint="--model")
    err = Console(stderr=True)
    reports: list[MethodReport] = []
    per_method: dict[str, list[Any]] = {}
    label = f"{strategy} k={width}"
    plan = ([("greedy", greedy)] if greedy is not None else []) + [(label, cfg)]
    with engine_output_to_stderr():  # stdout carries the report only
        model, make_ops, prompt, load_s = start_engine(engine, model, pm, raw=raw, fork=fork)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=False) as progress:
            for name, conf in plan:
                results, wall, kv = solve(make_ops(), probs, conf, pm=pm, prompt=prompt, label=name,
                                          progress=progress)
                reports.append(summarize(name, probs, results, wall, kv.peak_blocks, kv.block_seconds))
                per_method[name] = results

    out = Console()
    title = f"ttc run: {problems} ({split}) n={n} seed={seed}, {model.name} on {engine.value}"
    out.print(report_table(reports, title=title))
    line = verdict(reports[0], reports[1]) if len(reports) == 2 else None
    if line is not None:
        out.print(line, highlight=False)
    if json_out is not None:
        doc = {
            "verdict": line,
            "config": {"problems": problems, "n": n, "split": split, "seed": seed, "strategy": strategy, "search": cfg,
                       "greedy": greedy, "model": str(model), "engine": engine.value, "chat": not raw},
            "machine": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": os.cpu_count(), "engine_start_s": load_s},
            "methods": {r.method: r.to_json() for r in reports},
            "problems": [
                {"id": p.id, "question": p.question, "answer": p.answer,
                 **{f"{m}:answer": res[i].answer for m, res in per_method.items()},
                 **{f"{m}:correct": p.id in rep.correct_ids for rep in reports for m in [rep.method]}}
                for i, p in enumerate(probs)
            ],
        }
        json_out.write_text(json.dumps(doc, indent=2))
        err.print(f"wrote {json_out}", highlight=False)
