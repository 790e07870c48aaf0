"""Step-level search with the in-engine fork vs without it, same engine, same run (not a test).

One in-process ``vllm.LLM`` running the TTC scheduler serves both modes, alternating, prefix cache
reset before every run:

- ``fork``: :class:`~ttc_plugins.vllm_backend.search_ops.VLLMEngineOps` (default): each step
  request is held in the engine when it ends and the next round's children fork from it (full
  blocks shared, the tail block copied, one token computed per child);
- ``prefix-cache``: ``VLLMEngineOps(fork=False)``: children are new requests whose prompts extend
  the branch; the prefix cache serves the full blocks, the partial tail block is computed again.

Same problems, strategy, budget and seeds; reports wall time, CPU time of this process (the
engine core runs in it), tokens computed vs reused (engine counters), and whether both modes chose
the same answers.

    OMP_NUM_THREADS=1 python benchmarks/bench_step_fork.py --model smollm2 --n 8 --width 4 \\
        --results benchmarks/results/step-fork-smollm2.md
    OMP_NUM_THREADS=1 python benchmarks/bench_step_fork.py --model tiny --n 2 --width 2 --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_models, also under PYTHONSAFEPATH=1
from bench_models import model_path  # noqa: E402
from bench_search_setup import add_search_args, search_workload  # noqa: E402

SCHEDULER = "ttc_plugins.vllm_backend.beam_scheduler.TTCScheduler"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_search_args(ap, n=8)
    ap.add_argument("--results", type=Path, default=None, help="write a markdown report here")
    args = ap.parse_args()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # CPU time of this process = the engine's

    from vllm import LLM

    from ttc_plugins.manager import get_plugin_manager
    from ttc_plugins.search.driver import SearchPrompt, run_search
    from ttc_plugins.vllm_backend.search_ops import VLLMEngineOps, llm_kwargs

    model = model_path(args.model)
    pm = get_plugin_manager()
    llm = LLM(**llm_kwargs(model, dtype="float32", max_num_seqs=64, scheduler_cls=SCHEDULER,
                            kv_cache_memory_bytes=args.kv_mib * 2**20))
    sched = llm.llm_engine.engine_core.engine_core.scheduler
    search, problems, texts = search_workload(args, llm.get_tokenizer(), pm)
    prompts = [SearchPrompt(text=t, request_id=f"p{i}") for i, t in enumerate(texts)]
    run_search(VLLMEngineOps(llm, pm=pm), prompts[:1], {**search, "max_steps": 1}, pm=pm)  # warm-up

    rows: dict[str, list[dict]] = {"fork": [], "prefix-cache": []}
    for r in range(args.repeats):
        for mode in ("fork", "prefix-cache") if r % 2 == 0 else ("prefix-cache", "fork"):
            assert llm.reset_prefix_cache(), "blocks still held: the prefix cache could not be reset"
            ops = VLLMEngineOps(llm, pm=pm, fork=mode == "fork")
            forks0 = sched.held_branches.counters["forks_in_place"]
            t0, c0 = time.perf_counter(), time.process_time()
            results = run_search(ops, prompts, search, pm=pm)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            row = {"wall": wall, "cpu": cpu, "texts": [res.text for res in results],
                   "computed": ops.stats.tokens_computed, "reused": ops.stats.tokens_reused,
                   "generated": sum(res.counters.tokens_generated for res in results),
                   "requests": ops.sequences, "forks": sched.held_branches.counters["forks_in_place"] - forks0,
                   "held_after": len(sched.held_branches.held)}
            rows[mode].append(row)
            correct = sum(p.check(t) for p, t in zip(problems, row["texts"]))
            print(f"repeat {r} {mode}: {wall:.1f} s wall, {cpu:.1f} s CPU, {correct}/{len(problems)} correct, "
                  f"computed {row['computed']}, reused {row['reused']}, forks {row['forks']}", flush=True)

    med = {m: statistics.median(x["wall"] for x in v) for m, v in rows.items()}
    cpu = {m: statistics.median(x["cpu"] for x in v) for m, v in rows.items()}
    same = sum(a == b for a, b in zip(rows["fork"][0]["texts"], rows["prefix-cache"][0]["texts"]))
    computed = {m: v[0]["computed"] for m, v in rows.items()}
    summary = (f"{args.strategy} width {args.width}, {len(problems)} {args.problems} problems: fork {med['fork']:.1f} s, "
               f"prefix cache {med['prefix-cache']:.1f} s wall -> {med['prefix-cache'] / med['fork']:.2f}x "
               f"({cpu['prefix-cache'] / cpu['fork']:.2f}x CPU time); tokens computed {computed['fork']} vs "
               f"{computed['prefix-cache']} ({computed['prefix-cache'] / max(1, computed['fork']):.2f}x fewer); "
               f"same answers {same}/{len(problems)}")
    print(summary)
    if args.results:
        import vllm

        cmd = " ".join(["OMP_NUM_THREADS=1 python benchmarks/bench_step_fork.py", *sys.argv[1:]])
        lines = [f"# Step-level {args.strategy} search: in-engine fork vs prefix cache ({args.model})", "",
                 f"Command: `{cmd}`", "",
                 f"- machine: {platform.machine()} / {os.cpu_count()} CPUs (shared), {platform.platform()}; "
                 f"load average at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
                 f"- vLLM {vllm.__version__}, in-process engine with the TTC scheduler, float32, eager, chunked "
                 "prefill off, prefix caching on (reset before every run); both modes on the same engine, alternating",
                 f"- KV pool: `kv_cache_memory_bytes` {args.kv_mib} MiB", f"- search: `{json.dumps(search)}`", "",
                 "| mode | wall per run (s) | median wall (s) | median CPU (s) | correct | tokens generated "
                 "| tokens computed | tokens reused | engine requests | forks in place | held after |",
                 "|---|---|---|---|---|---|---|---|---|---|---|"]
        for mode, v in rows.items():
            x = v[0]
            correct = sum(p.check(t) for p, t in zip(problems, x["texts"]))
            walls = ", ".join(format(y["wall"], ".1f") for y in v)
            lines.append(f"| {mode} | {walls} | {med[mode]:.1f} | {cpu[mode]:.1f} "
                         f"| {correct}/{len(problems)} | {x['generated']} | {x['computed']} | {x['reused']} "
                         f"| {x['requests']} | {x['forks']} | {x['held_after']} |")
        lines += ["", f"**{summary}**", ""]
        args.results.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
