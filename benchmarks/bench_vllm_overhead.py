"""Overhead of ttc-plugins on vLLM when installed but unused (not a test).

Each engine runs in a fresh child process (``vllm.LLM``, eager, in-process engine core so that the
process's CPU time covers all of vLLM's work), alternating two modes in one run so drift on a
shared machine hits both equally:

- ``off``: not installed, as far as vLLM can tell: the child hides every entry point of
  ttc-plugins from ``importlib.metadata`` before importing vLLM, so neither the general plugin nor
  the logits processor loads and vLLM runs its own model class;
- ``on``: the plugin installed and registered (TTC model class, both frontend patches, logits
  processor) but no ``additional_config.ttc`` and no request with ``ttc``.

Workload per measurement: ``--prompts`` prompts of 32 random tokens, ``--max-tokens`` greedy tokens
each (ignore_eos), one ``generate`` call; median over ``--repeats`` after one warm-up. Two ratios
are reported: wall-clock throughput, and CPU time per token (the process's user+system time). On a
shared machine other work inflates wall time at random, while the CPU time a process spends is
what the plugin's overhead actually costs; the CPU-time ratio is the one to read there.

Engines differ from process to process by several percent on a small shared VM (memory layout,
thread placement), more than the plugin's cost, so a last ``on`` engine runs the same workload
under ``cProfile`` and reports the plugin's own share: the time spent inside ``ttc_plugins``
functions (their own time, as cProfile counts it) over the process's total profiled time.

    OMP_NUM_THREADS=1 python benchmarks/bench_vllm_overhead.py --model tiny --rounds 3
    OMP_NUM_THREADS=1 python benchmarks/bench_vllm_overhead.py --model smollm2 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_models, also under PYTHONSAFEPATH=1
from bench_models import model_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _hide_ttc_entry_points() -> None:
    """Make this process look like ttc-plugins is not installed (for vLLM's plugin loaders)."""
    import importlib.metadata as md

    real = md.entry_points

    def entry_points(**params):
        eps = real(**params)
        if not isinstance(eps, md.EntryPoints):  # the no-argument form (a mapping of groups)
            return eps
        return md.EntryPoints(ep for ep in eps if not ep.value.startswith("ttc_plugins"))

    md.entry_points = entry_points


def child(args: argparse.Namespace) -> None:
    import random

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if args.mode == "off":
        _hide_ttc_entry_points()
    from vllm import LLM, SamplingParams

    kwargs = dict(model=args.model_path, enforce_eager=True, max_model_len=1024, seed=0,
                  kv_cache_memory_bytes=512 * 2**20, enable_prefix_caching=False)
    if args.mode == "on":
        eps = __import__("importlib.metadata").metadata.entry_points(group="vllm.logits_processors")
        if not any(ep.value.startswith("ttc_plugins.vllm_backend") for ep in eps):
            kwargs["logits_processors"] = ["ttc_plugins.vllm_backend.logits:TTCLogitsProcessor"]
    llm = LLM(**kwargs)
    rng = random.Random(0)
    vocab = llm.get_tokenizer().vocab_size
    prompts = [{"prompt_token_ids": [rng.randrange(10, vocab - 10) for _ in range(32)]} for _ in range(args.prompts)]
    sp = SamplingParams(max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True)
    llm.generate(prompts, sp, use_tqdm=False)  # warm-up
    times, cpu = [], []
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        outs = llm.generate(prompts, sp, use_tqdm=False)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        assert sum(len(o.outputs[0].token_ids) for o in outs) == args.prompts * args.max_tokens
    registered = "ttc_plugins.vllm_backend" in sys.modules and sys.modules["ttc_plugins.vllm_backend"].is_registered()
    result = {"mode": args.mode, "times": times, "cpu": cpu, "registered": registered}
    if profiler is not None:
        import pstats

        profiler.disable()
        stats = pstats.Stats(profiler).stats
        total = sum(v[2] for v in stats.values())
        plugin = {f"{Path(k[0]).name}:{k[2]}": v[2] for k, v in stats.items() if "ttc_plugins" in k[0]}
        result["profile"] = {"total_s": total, "plugin_s": sum(plugin.values()),
                             "top": sorted(plugin.items(), key=lambda kv: -kv[1])[:5]}
    Path(args.out).write_text(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="tiny | smollm2 | a model directory")
    ap.add_argument("--rounds", type=int, default=3, help="off/on engine pairs")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--results", type=Path, default=None, help="write a markdown report here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=["off", "on"], help=argparse.SUPPRESS)
    ap.add_argument("--model-path", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    model_dir = model_path(args.model)
    tokens = args.prompts * args.max_tokens
    per_mode: dict[str, list[float]] = {"off": [], "on": []}
    cpu_mode: dict[str, list[float]] = {"off": [], "on": []}
    load_start = os.getloadavg()
    print(f"load average at the start: {', '.join(f'{x:.2f}' for x in load_start)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        def run_child(mode: str, out: Path, *extra: str) -> dict:
            env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
            cmd = [sys.executable, __file__, "--child", "--mode", mode, "--model-path", model_dir, "--out", str(out),
                   "--prompts", str(args.prompts), "--max-tokens", str(args.max_tokens),
                   "--repeats", str(args.repeats), *extra]
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            res = json.loads(out.read_text())
            assert res["registered"] == (mode == "on"), res
            return res

        for r in range(args.rounds):
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                res = run_child(mode, Path(tmp) / f"{mode}-{r}.json")
                per_mode[mode].append(statistics.median(res["times"]))
                cpu_mode[mode].append(statistics.median(res["cpu"]))
                print(f"round {r} {mode}: median {per_mode[mode][-1]:.3f}s wall, {cpu_mode[mode][-1]:.3f}s cpu "
                      f"-> {tokens / per_mode[mode][-1]:.0f} tok/s", flush=True)
        prof = run_child("on", Path(tmp) / "profile.json", "--profile")["profile"]
    share = prof["plugin_s"] / prof["total_s"]
    print(f"profiled on-engine: {prof['plugin_s'] * 1000:.1f} ms of {prof['total_s']:.2f} s in ttc_plugins "
          f"({share:.2%}); top: {prof['top']}", flush=True)
    off, on = statistics.median(per_mode["off"]), statistics.median(per_mode["on"])
    cpu_off, cpu_on = statistics.median(cpu_mode["off"]), statistics.median(cpu_mode["on"])
    ratio = off / on  # throughput(on) / throughput(off)
    cpu_ratio = cpu_off / cpu_on  # tokens per CPU-second, on / off
    summary = (f"{args.model}: off {tokens / off:.0f} tok/s, on (installed, unused) {tokens / on:.0f} tok/s, "
               f"wall ratio {ratio:.3f}, CPU-time ratio {cpu_ratio:.3f}, plugin's own share {share:.2%}")
    print(summary)
    if args.results:
        import vllm

        cmd = (f"OMP_NUM_THREADS=1 python benchmarks/bench_vllm_overhead.py --model {args.model} --rounds {args.rounds}"
               f" --repeats {args.repeats} --prompts {args.prompts} --max-tokens {args.max_tokens}")
        results = os.path.relpath(args.results.resolve(), ROOT)
        lines = [
            f"# vLLM overhead of ttc-plugins installed but unused ({args.model})", "",
            f"Command: `{cmd} --results {results}`", "",
            f"- machine: {platform.node()} / {platform.machine()} / {os.cpu_count()} CPUs (shared), {platform.platform()}",
            f"- vLLM {vllm.__version__}, eager, in-process engine core, prefix caching off, float dtype from the model",
            f"- load average at the start: {', '.join(f'{x:.2f}' for x in load_start)}; at the end: "
            f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}",
            f"- workload: {args.prompts} prompts x 32 tokens, {args.max_tokens} greedy tokens each; median of "
            f"{args.repeats} after a warm-up, per engine; {args.rounds} engines per mode, alternating", "",
            "| mode | per-engine wall medians (s) | wall median | tok/s | per-engine CPU medians (s) | CPU median |",
            "|---|---|---|---|---|---|",
            f"| off (not installed) | {', '.join(f'{t:.3f}' for t in per_mode['off'])} | {off:.3f} | {tokens / off:.0f} "
            f"| {', '.join(f'{t:.3f}' for t in cpu_mode['off'])} | {cpu_off:.3f} |",
            f"| on (installed, unused) | {', '.join(f'{t:.3f}' for t in per_mode['on'])} | {on:.3f} | {tokens / on:.0f} "
            f"| {', '.join(f'{t:.3f}' for t in cpu_mode['on'])} | {cpu_on:.3f} |",
            "", f"**Throughput ratio on/off: wall {ratio:.3f}, CPU time {cpu_ratio:.3f}** (target >= 0.98)", "",
            f"**The plugin's own share of an installed-but-unused engine's profiled time: {share:.2%}** "
            f"({prof['plugin_s'] * 1000:.1f} ms of {prof['total_s']:.2f} s over {args.repeats} generates; "
            f"ratio implied {1 - share:.4f}). Functions: "
            + ", ".join(f"`{name}` {t * 1000:.2f} ms" for name, t in prof["top"]), "",
        ]
        args.results.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
