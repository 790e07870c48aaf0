"""ETS vs REBASE KV sweep on one engine: many (strategy, width, params) runs over the same
problems, each reported with the KV measures of ``ttc bench`` and the ETS paper's (not a test).

``ttc bench`` applies one ``--param`` set to every strategy and reports the *largest single
search's* peak KV tokens; a weight sweep needs many ETS settings against one REBASE baseline and
per-search numbers. This script loads the engine once and runs each configuration as ``ttc bench``
does (same step defaults, same ``solve`` batch, fresh EngineOps per run), recording per search:

- ``peak``: the search's peak KV tokens (``SearchCounters.peak_kv_tokens``: distinct tokens of the
  tree of the branches extended in a round, prompt included, shared prefixes once);
- ``kv_sum`` / ``rounds``: that tree's tokens *without* the prompt summed over the search's rounds,
  and the rounds (``SearchCounters.kv_tokens_sum`` / ``kv_rounds``) -- the ETS paper's "average KV
  cache size during the search" is their ratio (its code sums the retained tree of the open
  leaves over every selection round and every question; its root length is ~0);

and reports per configuration: accuracy, max and mean per-search peak, and the retained tree's
tokens (prompt excluded) summed and averaged over all rounds of all searches (the paper's measure;
``ttc bench``'s "avg KV tokens / round").

    OMP_NUM_THREADS=1 PYTHONSAFEPATH=1 python benchmarks/bench_ets_sweep.py --n 10 --width 8 \\
        --config rebase --config ets --config ets:kv_weight=3 --out /tmp/ets-sweep.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def parse_config(text: str) -> tuple[str, dict[str, Any]]:
    """``ets:kv_weight=3,coverage_weight=1.5`` -> ("ets", {...}); values parse as JSON."""
    name, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        try:
            params[k] = json.loads(v)
        except json.JSONDecodeError:
            params[k] = v
    return name, params


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="arith-short")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default=None, choices=["train", "dev", "test"], help="default: the unsplit set")
    ap.add_argument("--concurrency", type=int, default=0,
                    help="searches in flight: problems run in consecutive groups of this many (0: all at "
                         "once); the row's problems per minute is n over the groups' total wall time")
    ap.add_argument("--width", type=int, action="append", help="repeatable; default 8")
    ap.add_argument("--config", action="append", required=True, help="strategy[:k=v,k=v] (repeatable)")
    ap.add_argument("--param", action="append", default=[], help="k=v for every run (as ttc bench --param)")
    ap.add_argument("--out", default=None, help="write per-search results as JSON here")
    args = ap.parse_args(argv)

    from ttc_plugins.commands.run import RunEngine, parse_params, search_config, solve, start_engine
    from ttc_plugins.manager import get_plugin_manager
    from ttc_plugins.problems import load_problems

    pm = get_plugin_manager()
    problems = load_problems(args.problems, n=args.n, seed=args.seed, split=args.split)
    common = parse_params(args.param)
    widths = args.width or [8]
    plan = []
    for w in widths:
        for c in args.config:
            name, params = parse_config(c)
            plan.append((c, w, search_config(name, w, None, args.seed, {**common, **params}, pm=pm)))
    _, make_ops, prompt, load_s = start_engine(RunEngine.vllm, None, pm)
    solve(make_ops(), problems[:1], plan[0][2], pm=pm, prompt=prompt, label="warm-up")

    rows, doc = [], {"command": shlex.join(["python", "benchmarks/bench_ets_sweep.py", *(argv or sys.argv[1:])]),
                     "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                 "load_avg": os.getloadavg()}, "runs": []}
    for label, w, cfg in plan:
        tag = f"{label} w={w}"
        group = args.concurrency or len(problems)
        results, wall, peak_blocks, block_seconds = [], 0.0, 0, 0.0
        for start in range(0, len(problems), group):
            res, group_wall, kv = solve(make_ops(), problems[start:start + group], cfg, pm=pm, prompt=prompt, label=tag)
            results += res
            wall += group_wall
            peak_blocks, block_seconds = max(peak_blocks, kv.peak_blocks), block_seconds + kv.block_seconds
        per = []
        for p, r in zip(problems, results):
            c = r.counters
            per.append({"id": p.id, "correct": bool(p.check(r.answer if r.answer is not None else r.text)),
                        "peak": c.peak_kv_tokens, "rounds": c.kv_rounds, "kv_sum": c.kv_tokens_sum,
                        "retained_nodes_sum": c.retained_nodes_sum, "tokens": c.tokens_generated,
                        "embedder": r.info.get("embedder")})
        acc = sum(x["correct"] for x in per)
        kv_sum, rounds = sum(x["kv_sum"] for x in per), sum(x["rounds"] for x in per)
        row = {"config": label, "width": w, "correct": acc, "n": len(per),
               "peak_max": max(x["peak"] for x in per), "peak_mean": sum(x["peak"] for x in per) / len(per),
               "kv_sum": kv_sum, "kv_avg": kv_sum / max(1, rounds), "tokens": sum(x["tokens"] for x in per),
               "retained_nodes_sum": sum(x["retained_nodes_sum"] for x in per),
               "peak_blocks": peak_blocks, "kv_block_seconds": round(block_seconds, 1), "wall_s": round(wall, 1),
               "concurrency": group, "problems_per_min": round(60 * len(problems) / wall, 2), "search": cfg, "per_search": per}
        rows.append(row)
        doc["runs"].append(row)
        print(f"{tag:40s} acc {acc}/{len(per)}  peak max {row['peak_max']:5d} mean {row['peak_mean']:7.1f}  "
              f"paper-KV avg {row['kv_avg']:6.1f} sum {row['kv_sum']:6d}  tokens {row['tokens']:6d}  "
              f"blocks {peak_blocks:4d}  block-s {block_seconds:8.1f}  {wall:6.1f}s "
              f"({row['problems_per_min']:.1f} problems/min)", flush=True)
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(doc, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
