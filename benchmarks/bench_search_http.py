"""Step-level search inside the engine vs the same search driven over the OpenAI HTTP API (not a
test).

One vLLM OpenAI server (module form, plugin installed, chunked prefill off for seeded branches,
``--enable-prompt-tokens-details``) serves both modes in the same run, alternating:

- ``in-engine``: one ``/v1/completions`` request per problem with ``vllm_xargs.ttc.search``; the
  search runs in the API server on its engine client (``vllm_backend.serving``);
- ``over-http``: the peers' way: the search loop runs in this client
  (``ttc_plugins.search.run_search`` over :class:`~ttc_plugins.search.openai_ops.OpenAIEngineOps`),
  one HTTP request per continuation, all problems' branches of a round sent concurrently.

Same problems, strategy, budget and seeds in both; reports wall time, accuracy, tokens generated,
HTTP requests and whether both modes chose the same answers.

    OMP_NUM_THREADS=1 python benchmarks/bench_search_http.py --model smollm2 --n 10 --width 4 \\
        --results benchmarks/results/search-in-engine-vs-http.md
    OMP_NUM_THREADS=1 python benchmarks/bench_search_http.py --model tiny --n 2 --width 2 --smoke
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_models, also under PYTHONSAFEPATH=1
from bench_models import ROOT, model_path  # noqa: E402
from bench_search_setup import add_search_args, search_workload  # noqa: E402

sys.path.append(str(ROOT))  # after site-packages: never shadow the installed ttc_plugins
from integration.common.server import ServerStartError, free_port, start_openai_server, stop_server  # noqa: E402

START_TIMEOUT_S = 600


def start_server(model: str, log_path: Path, *, max_model_len: int, kv_bytes: int,
                 python: str = sys.executable) -> tuple[subprocess.Popen, str]:
    """vLLM's OpenAI server on a free local port with the plugin and the TTC scheduler; ``python``:
    the interpreter whose vLLM and ttc-plugins serve (``bench_its_hub.py`` runs its client apart)."""
    port = free_port()
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--enforce-eager", "--seed", "0",
           "--max-model-len", str(max_model_len), "--kv-cache-memory-bytes", str(kv_bytes),
           "--no-enable-chunked-prefill", "--max-num-batched-tokens", str(max_model_len),
           "--enable-prompt-tokens-details",
           # the TTC scheduler: the in-engine search forks each branch's children from its held
           # last step; requests over HTTP are plain requests to it (vLLM's own path)
           "--scheduler-cls", "ttc_plugins.vllm_backend.beam_scheduler.TTCScheduler"]
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1"}  # for POST /reset_prefix_cache between runs
    base = f"http://127.0.0.1:{port}"
    try:
        return start_openai_server(cmd, log_path, base, START_TIMEOUT_S, env=env, cwd=tempfile.gettempdir()), base
    except ServerStartError as e:
        raise SystemExit(str(e)) from None


def reset_prefix_cache(base: str) -> None:
    """Every run starts cold: runs repeat the same seeded sequences, which a warm cache would serve."""
    with urllib.request.urlopen(urllib.request.Request(f"{base}/reset_prefix_cache", method="POST"), timeout=60) as r:
        assert r.status == 200, r.status


def _served_search(base: str, model: str, prompt: str, search: dict) -> dict:
    body = {"model": model, "prompt": prompt, "max_tokens": 16, "vllm_xargs": {"ttc": json.dumps({"search": search})}}
    req = urllib.request.Request(f"{base}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return json.loads(r.read())["ttc"]["search"]


def run_in_engine(base: str, model: str, prompts: list[str], search: dict) -> tuple[list[str], float, dict]:
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        reports = list(pool.map(lambda p: _served_search(base, model, p, search), prompts))
    wall = time.perf_counter() - t0
    counters = {"tokens_generated": sum(r["counters"]["tokens_generated"] for r in reports),
                "tokens_computed": sum(r["counters"]["tokens_computed"] for r in reports),
                "http_requests": len(prompts), "engine_requests": sum(r["counters"]["model_calls"] for r in reports)}
    return [r["text"] for r in reports], wall, counters


def run_over_http(base: str, model: str, tokenizer, prompts: list[str], search: dict) -> tuple[list[str], float, dict]:
    from ttc_plugins.search.driver import SearchPrompt, run_search
    from ttc_plugins.search.openai_ops import OpenAIEngineOps

    ops = OpenAIEngineOps(base, model, tokenizer, max_workers=256)
    try:
        t0 = time.perf_counter()
        results = run_search(ops, [SearchPrompt(text=p, request_id=f"p{i}") for i, p in enumerate(prompts)], search)
        wall = time.perf_counter() - t0
    finally:
        ops.close()
    counters = {"tokens_generated": sum(r.counters.tokens_generated for r in results),
                "tokens_computed": sum(r.counters.tokens_computed for r in results),
                "http_requests": ops.http_requests, "engine_requests": sum(r.counters.model_calls for r in results)}
    return [r.text for r in results], wall, counters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_search_args(ap, n=10)
    ap.add_argument("--results", type=Path, default=None, help="write a markdown report here")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from ttc_plugins.manager import get_plugin_manager

    model = model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
    search, problems, prompts = search_workload(args, tokenizer, get_plugin_manager())

    rows: dict[str, list[tuple[float, list[str], dict]]] = {"in-engine": [], "over-http": []}
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_server(model, Path(tmp) / "server.log", max_model_len=2048, kv_bytes=args.kv_mib * 2**20)
        try:
            _served_search(base, model, prompts[0], {**search, "max_steps": 1})  # warm-up (first-request costs)
            for r in range(args.repeats):
                for mode in ("in-engine", "over-http") if r % 2 == 0 else ("over-http", "in-engine"):
                    reset_prefix_cache(base)
                    if mode == "in-engine":
                        texts, wall, counters = run_in_engine(base, model, prompts, search)
                    else:
                        texts, wall, counters = run_over_http(base, model, tokenizer, prompts, search)
                    rows[mode].append((wall, texts, counters))
                    correct = sum(p.check(t) for p, t in zip(problems, texts))
                    print(f"repeat {r} {mode}: {wall:.1f} s, {correct}/{len(problems)} correct, {counters}", flush=True)
        except Exception:
            print(f"server log tail:\n{(Path(tmp) / 'server.log').read_text()[-6000:]}", file=sys.stderr)
            raise
        finally:
            stop_server(proc, timeout=60)

    med = {m: statistics.median(w for w, _, _ in v) for m, v in rows.items()}
    same = sum(a == b for a, b in zip(rows["in-engine"][0][1], rows["over-http"][0][1]))
    speedup = med["over-http"] / med["in-engine"]
    summary = (f"{args.strategy} width {args.width}, {len(problems)} {args.problems} problems: in-engine "
               f"{med['in-engine']:.1f} s, over HTTP {med['over-http']:.1f} s -> {speedup:.2f}x; "
               f"same answers {same}/{len(problems)}")
    print(summary)
    if args.results:
        import vllm

        cmd = " ".join(["OMP_NUM_THREADS=1 python benchmarks/bench_search_http.py", *sys.argv[1:]])
        lines = [f"# Step-level {args.strategy} search: in the engine vs over the OpenAI HTTP API ({args.model})", "",
                 f"Command: `{cmd}`", "",
                 f"- machine: {platform.machine()} / {os.cpu_count()} CPUs (shared), {platform.platform()}; "
                 f"load average at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
                 f"- vLLM {vllm.__version__} OpenAI server (module form, `--scheduler-cls` TTC scheduler), float32, "
                 "eager, chunked prefill off, prefix caching on (reset before every run), vLLM's default "
                 "max_num_seqs (128 on CPU); both modes on the same server, alternating",
                 f"- KV pool: `--kv-cache-memory-bytes` {args.kv_mib} MiB", f"- search: `{json.dumps(search)}`", "",
                 "| mode | wall per run (s) | median (s) | correct | tokens generated | tokens computed | HTTP requests "
                 "| engine requests |",
                 "|---|---|---|---|---|---|---|---|"]
        for mode, v in rows.items():
            _, texts, counters = v[0]
            correct = sum(p.check(t) for p, t in zip(problems, texts))
            lines.append(f"| {mode} | {', '.join(f'{w:.1f}' for w, _, _ in v)} | {med[mode]:.1f} | {correct}/{len(problems)} "
                         f"| {counters['tokens_generated']} | {counters['tokens_computed']} | {counters['http_requests']} "
                         f"| {counters['engine_requests']} |")
        lines += ["", f"**{summary}**", ""]
        args.results.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
