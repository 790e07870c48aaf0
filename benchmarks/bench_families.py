"""Which generated problem families the default model can partly solve: greedy accuracy (95%
Wilson interval) of SmolLM2-135M-Instruct on each bundled family's dev split, on vLLM, exactly as
``ttc bench`` runs greedy (step-wise, chat template, the default step settings).

    OMP_NUM_THREADS=1 python benchmarks/bench_families.py --n 200 --write benchmarks/results/families-smollm2.md
    python benchmarks/bench_families.py --model tiny --engine hf --n 2 --families add-sub   # smoke: it runs

The issue's target band is 10%-60% greedy accuracy: a family below it leaves a search nothing to
find, one above it leaves nothing to fix. Families are kept or dropped by this table, not by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_models, also under PYTHONSAFEPATH=1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2", help="smollm2 (the default model) | tiny | a model directory")
    ap.add_argument("--families", default="", help="comma-separated; default: every bundled family")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--split", default="dev", choices=["train", "dev", "test"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", type=Path, default=None, help="write the markdown report here")
    ap.add_argument("--dump", type=Path, default=None, help="write every problem's greedy text here (JSONL)")
    ap.add_argument("--engine", default="vllm", choices=["vllm", "hf"], help="hf: the transformers reference")
    args = ap.parse_args(argv)

    from ttc_plugins.commands.bench import _engine_version, _machine
    from ttc_plugins.commands.confidence import format_accuracy
    from ttc_plugins.commands.run import RunEngine, greedy_config, search_config, solve, start_engine, summarize
    from ttc_plugins.manager import get_plugin_manager
    from ttc_plugins.problems import PROBLEM_SETS, load_problems

    load0 = os.getloadavg()[0]
    pm = get_plugin_manager()
    families = [f for f in args.families.split(",") if f] or list(PROBLEM_SETS)
    per_family = {f: load_problems(f, n=args.n, seed=args.seed, split=args.split) for f in families}
    from bench_models import model_path

    model = Path(model_path(args.model))
    greedy = greedy_config(search_config("best_of_n", 1, None, args.seed, {}, pm=pm), pm=pm)
    engine = RunEngine(args.engine)
    model, make_ops, prompt, load_s = start_engine(engine, model, pm)
    rows = []
    for fam, probs in per_family.items():
        results, wall, peak = solve(make_ops(), probs, greedy, pm=pm, prompt=prompt, label=f"{fam} greedy")
        rep = summarize(fam, probs, results, wall, peak.peak_blocks)
        if args.dump:
            with args.dump.open("a") as f:
                for p, r in zip(probs, results):
                    f.write(json.dumps({"family": fam, "id": p.id, "question": p.question, "answer": p.answer,
                                        "text": r.text, "extracted": r.answer, "correct": p.check(r.answer or r.text)}) + "\n")
        band = "in band" if 0.10 <= rep.accuracy <= 0.60 else ("too hard" if rep.accuracy < 0.10 else "too easy")
        rows.append((fam, format_accuracy(rep.correct, rep.n), band, rep.tokens_generated, f"{wall:.1f}"))
        print(f"{fam:12s} {rows[-1][1]:32s} {band:8s} tokens {rep.tokens_generated:7d} wall {wall:6.1f} s",
              file=sys.stderr, flush=True)
    load1 = os.getloadavg()[0]
    command = shlex.join(["python", "benchmarks/bench_families.py", *(argv if argv is not None else sys.argv[1:])])
    lines = [
        "# Greedy accuracy of the default model per problem family", "",
        f"- command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} {command}`",
        f"- machine: {', '.join(f'{k} {v}' for k, v in _machine().items())}; load average {load0:.2f} at the start, "
        f"{load1:.2f} at the end",
        f"- engine: {engine.value} ({_engine_version(engine)}), start {load_s:.1f} s; model `{model.name}`",
        f"- {args.n} problems per family, {args.split} split, seed {args.seed}; greedy = ``ttc bench``'s greedy row; "
        "accuracy with its 95% Wilson interval; band: 10%-60% is the issue's target", "",
        "| family | greedy accuracy [95% CI] | band | tokens generated | wall (s) |",
        "|---|---:|---|---:|---:|",
        *(f"| {f} | {a} | {b} | {t:,} | {w} |" for f, a, b, t, w in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
