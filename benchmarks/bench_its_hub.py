"""ttc-plugins served in the engine vs its_hub over HTTP, on one vLLM server (not a test; not a CI
dependency).

its_hub (PyPI ``its-hub``) is what a vLLM user would otherwise reach for: it runs self-consistency,
best-of-N, step beam search and particle filtering against any OpenAI-compatible server, one HTTP
request per sample or step. Here both tools drive **the same vLLM OpenAI server** (the plugin
installed, the TTC scheduler on, chunked prefill off, prefix caching on and reset before each run):

- ``its_hub``: its algorithms (``its_hub.core.algorithms``), ``OpenAICompatibleLanguageModel`` on the
  server's ``/v1``, steps separated by ``"\\n"``; ``problems in flight`` problems at a time
  (``asyncio`` semaphore, as its docs run many problems);
- ``ttc``: one ``/v1/chat/completions`` request per problem carrying ``ttc.search``; the search runs
  in the server, holding its branches in the engine; the same number of problems in flight.

The same problems (chat: the problem's prompt as the user message, as ``ttc run`` sends it, through
the server's template), the same sampling temperature, the same width, and **the same arithmetic
process verifier**:
``ttc_plugins.scoring.step_checker.step_score`` judges each step (the fraction of its equations that
hold); a path is worth its worst step (``aggregation: min`` on our side, :func:`path_score` for
its_hub's PRM/ORM). No scorer reads the gold answer. Rows: accuracy with a 95% Wilson interval, wall
time, and from the server's own ``/metrics`` (deltas per run): requests, prompt tokens, prefix-cache
hits, tokens generated and tokens computed (prompt - cache hits + generated; a fork held in the
engine is computed once, so for our rows the search report's ``tokens computed`` is given too).

Its client needs ``its-hub[lm]`` and ttc-plugins' light dependencies, not vLLM; the server runs
with ``--server-python`` (an environment with vLLM and ttc-plugins):

    python3.11 -m venv /tmp/ih && /tmp/ih/bin/pip install 'its-hub[lm]==1.2.0' pluggy pydantic typer rich \\
        platformdirs filelock packaging numpy scipy sympy
    OMP_NUM_THREADS=1 PYTHONPATH=. /tmp/ih/bin/python benchmarks/bench_its_hub.py \\
        --server-python ~/.cache/ttc-plugins/nox/vllm-0-32-0/bin/python --problems compare --n 60 \\
        --out benchmarks/results/its-hub-smollm2
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import platform
import re
import shlex
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_search_http (imported where a server starts)

METHODS = ("self_consistency", "best_of_n", "beam", "particle_filter")
TOOLS = ("ttc", "its_hub")
METRICS = {"requests": "vllm:request_success_total", "prompt_tokens": "vllm:prompt_tokens_total",
           "generated": "vllm:generation_tokens_total", "cache_hits": "vllm:prefix_cache_hits_total"}


def path_score(text: str, delimiter: str = "\n") -> float:
    """A whole path's score under our ``arith_steps`` scorer with ``aggregation: min``: its worst
    step's :func:`step_score` (a step without an equation scores 1.0, as in the scorer)."""
    from ttc_plugins.scoring.step_checker import step_score

    return min((step_score(step)[0] for step in text.split(delimiter)), default=1.0)


def answer_key(text: str) -> str | None:
    """The answer a majority vote counts, as our self-consistency extracts and normalises it."""
    from ttc_plugins.scoring.verifiers import extract_answer
    from ttc_plugins.search.sampling import normalize_answer

    return normalize_answer(extract_answer(text))


def scrape(base: str) -> dict[str, float]:
    """The server's counters (summed over label sets) named in :data:`METRICS`."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=60) as r:
        text = r.read().decode()
    out = dict.fromkeys(METRICS, 0.0)
    for key, name in METRICS.items():
        for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", text, re.M):
            out[key] += float(m.group(1))
    return out


@dataclass
class Row:
    tool: str
    method: str
    width: int
    correct: list[bool]
    wall_s: float
    server: dict[str, float]
    report_tokens_computed: int | None = None
    texts: list[str] = field(default_factory=list)

    @property
    def computed(self) -> int:
        s = self.server
        return int(s["prompt_tokens"] - s["cache_hits"] + s["generated"])


# --- its_hub ---------------------------------------------------------------------------------------
def its_hub_algorithm(method: str, width: int, args: argparse.Namespace) -> Any:
    from its_hub.api.reward_models.orm import AbstractOutcomeRewardModel
    from its_hub.api.reward_models.prm import AbstractProcessRewardModel
    from its_hub.core.algorithms.bon import BestOfN
    from its_hub.core.algorithms.self_consistency import SelfConsistency
    from its_hub.core.algorithms.beam_search import BeamSearch
    from its_hub.core.algorithms.particle_gibbs import ParticleFiltering
    from its_hub.core.lms.step_generation import StepGeneration

    class ArithPRM(AbstractProcessRewardModel):
        """Our step verifier as its_hub's PRM: it gets each candidate's whole text so far."""

        def score(self, prompt_or_messages: Any, steps: list[str]) -> list[float]:
            return [path_score(t) for t in steps]

        async def ascore(self, prompt_or_messages: Any, steps: list[str]) -> list[float]:
            return self.score(prompt_or_messages, steps)

    class ArithORM(AbstractOutcomeRewardModel):
        """The same judgement of a finished answer (best-of-N's outcome reward model)."""

        def score(self, messages: Any, **kwargs: Any) -> list[float]:
            return [path_score(conv[-1].content or "") for conv in messages]

        async def ascore(self, messages: Any, orchestrator: Any = None, **kwargs: Any) -> list[float]:
            return self.score(messages)

    sg = StepGeneration(max_steps=args.max_steps, step_token="\n", stop_token=args.its_hub_stop_token,
                        temperature=args.temperature)
    if method == "self_consistency":
        return SelfConsistency(consistency_space_projection_func=answer_key)
    if method == "best_of_n":
        return BestOfN(orm=ArithORM())
    if method == "beam":
        # its_hub keeps beam_width paths and copies each budget / beam_width times: with
        # beam_width = width / expand that is our beam's width x expand children per round
        return BeamSearch(sg, ArithPRM(), beam_width=width // args.expand)
    if method == "particle_filter":
        return ParticleFiltering(sg, ArithPRM())
    raise ValueError(method)


async def _its_hub_all(base: str, model: str, questions: list[str], method: str, width: int,
                       args: argparse.Namespace) -> list[str]:
    from its_hub.core.lms.openai_lm import OpenAICompatibleLanguageModel
    from its_hub.core.utils import extract_content_from_lm_response

    lm = OpenAICompatibleLanguageModel(endpoint=f"{base}/v1", api_key="none", model_name=model,
                                       max_completion_tokens=args.max_tokens, temperature=args.temperature)
    alg = its_hub_algorithm(method, width, args)
    gate = asyncio.Semaphore(args.in_flight)

    async def one(q: str) -> str:
        async with gate:
            out = await alg.ainfer(lm, q, budget=width)  # samples, particles, paths per beam round
            return extract_content_from_lm_response(out) or ""

    try:
        return list(await asyncio.gather(*(one(q) for q in questions)))
    finally:
        await lm.close()


def run_its_hub(base: str, model: str, questions: list[str], method: str, width: int,
                args: argparse.Namespace) -> tuple[list[str], None]:
    return asyncio.run(_its_hub_all(base, model, questions, method, width, args)), None


# --- ours, served -----------------------------------------------------------------------------------
def our_search(method: str, width: int, args: argparse.Namespace) -> dict[str, Any]:
    from ttc_plugins.commands.run import DEFAULT_STEP_PARAMS

    search = {**DEFAULT_STEP_PARAMS, "strategy": method, "width": width, "temperature": args.temperature,
              "max_total_tokens": args.max_tokens, "seed": args.seed}
    if method != "self_consistency":
        search["scorer"] = "arith_steps"
    if method == "beam":
        search["width"], search["expand"] = width // args.expand, args.expand
    return search


def _post(base: str, body: dict) -> dict:
    req = urllib.request.Request(f"{base}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return json.loads(r.read())


def run_ttc(base: str, model: str, questions: list[str], method: str, width: int,
            args: argparse.Namespace) -> tuple[list[str], int | None]:
    def one(q: str) -> tuple[str, int]:
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": q}]}
        if method == "greedy":
            body.update(temperature=0.0, max_tokens=args.max_tokens)
            out = _post(base, body)
            return out["choices"][0]["message"]["content"] or "", out["usage"]["completion_tokens"]
        body["vllm_xargs"] = {"ttc": json.dumps({"search": our_search(method, width, args)})}
        out = _post(base, body)
        return out["choices"][0]["message"]["content"] or "", out["ttc"]["search"]["counters"]["tokens_computed"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.in_flight) as pool:
        got = list(pool.map(one, questions))
    return [t for t, _ in got], (None if method == "greedy" else sum(c for _, c in got))


# --- the run ----------------------------------------------------------------------------------------
def measure(base: str, tool: str, method: str, width: int, run: Callable, model: str, problems: list,
            args: argparse.Namespace) -> Row:
    from bench_search_http import reset_prefix_cache

    reset_prefix_cache(base)
    before = scrape(base)
    t0 = time.perf_counter()
    texts, report_computed = run(base, model, [p.prompt for p in problems], method, width, args)
    wall = time.perf_counter() - t0
    after = scrape(base)
    row = Row(tool, method, width, [bool(p.check(t)) for p, t in zip(problems, texts)], wall,
              {k: after[k] - before[k] for k in METRICS}, report_computed, texts)
    print(f"{tool:8s} {method:17s} w={width:2d} {sum(row.correct):3d}/{len(problems)}  {wall:7.1f} s  "
          f"requests {row.server['requests']:6.0f}  generated {row.server['generated']:7.0f}  "
          f"computed {row.computed:7d}  load {os.getloadavg()[0]:.2f}", flush=True)
    return row


def write_results(out: Path, rows: list[Row], header: dict[str, Any]) -> None:
    from ttc_plugins.commands.confidence import format_accuracy, paired_p_value_of

    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps({**header, "rows": [asdict(r) for r in rows]}, indent=1))
    lines = ["# ttc-plugins (served in the engine) vs its_hub (over HTTP), one vLLM server", "",
             f"- command: `{header['command']}`", f"- machine: {header['machine']}",
             f"- server: {header['server']}", f"- workload: {header['workload']}",
             f"- load average at start {header['load_start']}, at end {header['load_end']}", "",
             "| tool | method | width | accuracy (95% CI) | wall (s) | HTTP requests | engine requests "
             "| tokens generated | prompt tokens | cache hits | computed (server) | computed (search report) |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    n = len(rows[0].correct)
    for r in rows:
        http = r.server["requests"] if r.tool == "its_hub" else n
        lines.append(f"| {r.tool} | {r.method} | {r.width} | {format_accuracy(sum(r.correct), n)} | {r.wall_s:.1f} "
                     f"| {http:.0f} | {r.server['requests']:.0f} | {r.server['generated']:.0f} "
                     f"| {r.server['prompt_tokens']:.0f} | {r.server['cache_hits']:.0f} | {r.computed} "
                     f"| {r.report_tokens_computed if r.report_tokens_computed is not None else ''} |")
    lines += ["", "Engine requests: the server's finished requests (each of our in-engine steps is one; our "
              "HTTP requests are one per problem). Computed (server): prompt tokens - prefix-cache hits + "
              "generated, from `/metrics`; a branch our search forks from its held parent counts as prompt "
              "tokens there although its prefix is not recomputed, so for our rows the search report's "
              "figure (the engine ops' own count) is the one compared below. Paired: the same problems, "
              "exact McNemar test.", "",
              "| method | ours | its_hub | accuracy difference (paired p) | its_hub wall / ours "
              "| its_hub tokens computed / ours |", "|---|---|---|---|---:|---:|"]
    for m in METHODS:
        ours = next((r for r in rows if r.tool == "ttc" and r.method == m), None)
        theirs = next((r for r in rows if r.tool == "its_hub" and r.method == m), None)
        if ours is None or theirs is None:
            continue
        a, b = sum(ours.correct), sum(theirs.correct)
        p = paired_p_value_of(ours.correct, theirs.correct)
        lines.append(f"| {m} | {a}/{n} | {b}/{n} | {a - b:+d} (p={p:.2g}) | {theirs.wall_s / ours.wall_s:.2f}x "
                     f"| {theirs.computed / max(1, ours.report_tokens_computed or ours.computed):.2f}x |")
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server-python", default=sys.executable, help="python with vLLM and ttc-plugins installed")
    ap.add_argument("--model", type=Path, default=None, help="model directory (default: the default model)")
    ap.add_argument("--problems", default="compare")
    ap.add_argument("--split", default="test", choices=["train", "dev", "test"])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=4, help="samples / particles / paths per beam round")
    ap.add_argument("--expand", type=int, default=2, help="beam: children per kept path")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--in-flight", type=int, default=8, help="problems in flight for both tools")
    ap.add_argument("--temperature", type=float, default=0.3)
    ap.add_argument("--max-tokens", type=int, default=64,
                    help="ours: max_total_tokens per path; its_hub: max_completion_tokens per call")
    ap.add_argument("--max-steps", type=int, default=4, help="its_hub: steps per path")
    ap.add_argument("--its-hub-stop-token", default="answer is",
                    help="its_hub ends a path only at max_steps or this text (it ignores EOS)")
    ap.add_argument("--kv-mib", type=int, default=4096)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    from ttc_plugins.problems import load_problems

    if args.model is None:
        args.model = Path(os.path.expanduser("~/.cache/ttc-plugins/models/smollm2-135m-instruct"))
    problems = load_problems(args.problems, n=args.n, seed=args.seed, split=args.split)
    methods = [m for m in args.methods.split(",") if m]
    tools = [t for t in args.tools.split(",") if t]
    runners = {"ttc": run_ttc, "its_hub": run_its_hub}
    header: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/bench_its_hub.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, python "
                   f"{platform.python_version()}",
        "workload": f"{args.problems} ({args.split} split) n={len(problems)}, seed {args.seed}, width {args.width}, "
                    f"temperature {args.temperature}, {args.max_tokens} tokens per path (ours) / per call (its_hub), "
                    f"its_hub max_steps {args.max_steps}, stop token {args.its_hub_stop_token!r}, "
                    f"{args.in_flight} problems in flight",
        "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    from bench_search_http import start_server  # puts the checkout after site-packages (integration.common)

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        proc, base = start_server(str(args.model), log, max_model_len=2048, kv_bytes=args.kv_mib * 2**20,
                                  python=args.server_python)
        try:
            version = subprocess_version(args.server_python)
            header["server"] = (f"vLLM {version} OpenAI server, float32, eager, TTC scheduler, chunked prefill off, "
                                f"prefix caching on (reset before each run), KV pool {args.kv_mib} MiB")
            run_ttc(base, str(args.model), [problems[0].prompt], "best_of_n", 2, args)  # warm-up
            rows.append(measure(base, "ttc", "greedy", 1, run_ttc, str(args.model), problems, args))
            for i, m in enumerate(methods):
                # alternate which tool goes first, so neither always runs on a warmer box
                for tool in (tools if i % 2 == 0 else tools[::-1]):
                    rows.append(measure(base, tool, m, args.width, runners[tool], str(args.model), problems, args))
                    header["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
                    write_results(args.out, rows, header)
        except Exception:
            print(f"server log tail:\n{log.read_text()[-6000:]}", file=sys.stderr)
            raise
        finally:
            from integration.common.server import stop_server

            stop_server(proc, timeout=60)
    return 0


def subprocess_version(python: str) -> str:
    import subprocess

    return subprocess.run([python, "-c", "import vllm; print(vllm.__version__)"], capture_output=True, text=True,
                          cwd=tempfile.gettempdir()).stdout.strip()


if __name__ == "__main__":
    raise SystemExit(main())
