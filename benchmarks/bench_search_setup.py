"""What the step-level search benchmarks share: their command-line options and the workload they
build from them (the ``ttc.search`` object, the bundled problems, chat-formatted prompts)."""

from __future__ import annotations

import argparse
from typing import Any


def add_search_args(ap: argparse.ArgumentParser, *, n: int) -> None:
    ap.add_argument("--model", default="smollm2", help="smollm2 | tiny | a model directory")
    ap.add_argument("--problems", default="arith")
    ap.add_argument("--n", type=int, default=n)
    ap.add_argument("--strategy", default="beam")
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2, help="runs per mode, alternating order")
    ap.add_argument("--param", action="append", default=[], help="extra ttc.search key=value (as in ttc run)")
    ap.add_argument("--kv-mib", type=int, default=2048,
                    help="the engine's KV pool (MiB); held steps need room beside the running branches")
    ap.add_argument("--smoke", action="store_true", help="tiny settings: checks the script runs")


def search_workload(args: argparse.Namespace, tokenizer: Any, pm: Any) -> tuple[dict, list, list[str]]:
    """``(search, problems, prompts)``: the search object, the problems, their chat prompts."""
    from ttc_plugins.commands.run import _prompter, parse_params, search_config
    from ttc_plugins.problems import load_problems

    params = parse_params(args.param)
    if args.smoke:
        params = {"max_steps": 2, "max_step_tokens": 8, "max_total_tokens": 16, **params}
    search = search_config(args.strategy, args.width, None, args.seed, params, pm=pm)
    problems = load_problems(args.problems, n=args.n, seed=args.seed)
    prompts = [_prompter(tokenizer, chat=True)(p) for p in problems]
    return search, problems, prompts
