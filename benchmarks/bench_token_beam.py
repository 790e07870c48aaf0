"""Token-level beam search: ttc-plugins' in-engine beam (``ttc.beam`` on the TTC scheduler) vs
vLLM's ``LLM.beam_search`` (a client-side loop: one 1-token request per beam per step), on one
engine, same prompts, same width, same max tokens (not a test).

One in-process engine (``VLLM_ENABLE_V1_MULTIPROCESSING=0``: the process's CPU time covers all of
vLLM's work) started with ``scheduler_cls=TTCScheduler``; ``LLM.beam_search`` runs on it as plain
requests. Per width: one warm-up of each method, then each method once over all prompts as one
batch, the prefix cache reset before each timed run so neither inherits the other's prompt blocks.
Reported: wall time, process CPU time, the ratio, and the in-engine search's KV accounting (tokens
computed vs shared by forks).

    OMP_NUM_THREADS=1 python benchmarks/bench_token_beam.py                 # SmolLM2-135M, widths 4 and 8
    OMP_NUM_THREADS=1 python benchmarks/bench_token_beam.py --smoke         # tiny model, seconds
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_models, also under PYTHONSAFEPATH=1
from bench_models import model_path  # noqa: E402

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SCHEDULER = "ttc_plugins.vllm_backend.beam_scheduler.TTCScheduler"

PROMPTS = [
    "The history of the printing press begins",
    "Photosynthesis is the process by which plants",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The three laws of thermodynamics state that",
    "Once upon a time, in a small village by the sea,",
    "To make a good cup of tea, you should first",
    "The main causes of the French Revolution were",
    "A binary search tree is a data structure in which",
    "The capital of Australia is Canberra, which",
    "Regular exercise improves health because",
    "In machine learning, overfitting happens when",
    "The recipe for a simple tomato sauce:",
]


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _timed(fn):
    w, c = time.perf_counter(), _cpu()
    out = fn()
    return out, time.perf_counter() - w, _cpu() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2", help="smollm2 | tiny | a model directory")
    ap.add_argument("--widths", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--prompts", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--smoke", action="store_true", help="tiny model, 2 prompts, 8 tokens, width 2")
    ap.add_argument("--results", type=Path, help="write the markdown report here")
    args = ap.parse_args()
    if args.smoke:
        args.model, args.widths, args.prompts, args.max_tokens = "tiny", [2], 2, 8

    from vllm import LLM, SamplingParams
    from vllm.sampling_params import BeamSearchParams

    model = model_path(args.model)
    prompts = (PROMPTS * (args.prompts // len(PROMPTS) + 1))[: args.prompts]
    llm = LLM(model=model, max_model_len=1024, kv_cache_memory_bytes=1 << 30, enforce_eager=True,
              scheduler_cls=SCHEDULER, seed=0)

    def ours(width: int, n: int, max_tokens: int):
        sp = SamplingParams(max_tokens=max_tokens, extra_args={"ttc": {"beam": {"width": width}}})
        return llm.generate(prompts[:n], sp, use_tqdm=False)

    def theirs(width: int, n: int, max_tokens: int):
        return llm.beam_search([{"prompt": p} for p in prompts[:n]],
                               BeamSearchParams(beam_width=width, max_tokens=max_tokens), use_tqdm=False)

    rows = []
    for width in args.widths:
        ours(width, 2, 4), theirs(width, 2, 4)  # warm-up (the first logprobs request costs extra)
        llm.reset_prefix_cache()
        outs, ow, oc = _timed(lambda: ours(width, len(prompts), args.max_tokens))
        llm.reset_prefix_cache()
        _, tw, tc = _timed(lambda: theirs(width, len(prompts), args.max_tokens))
        kv = [o.ttc["beam"]["kv"] for o in outs]
        rows.append({
            "width": width, "ours_wall": ow, "ours_cpu": oc, "vllm_wall": tw, "vllm_cpu": tc,
            "computed": sum(k["tokens_computed"] for k in kv), "shared": sum(k["tokens_shared_by_fork"] for k in kv),
            "prompt": sum(k["prompt_tokens"] for k in kv), "forks": sum(k["forks"] for k in kv),
            "recompute_forks": sum(k["recompute_forks"] for k in kv),
            "best_len": sum(len(o.outputs[0].token_ids) for o in outs) / len(outs),
        })
        print(f"width {width}: ours {ow:.2f}s (cpu {oc:.2f}s), LLM.beam_search {tw:.2f}s (cpu {tc:.2f}s), "
              f"speedup {tw / ow:.1f}x", flush=True)

    report = _report(args, model, rows)
    print(report)
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(report)


def _report(args: argparse.Namespace, model: str, rows: list[dict]) -> str:
    import vllm

    cmd = "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "?") + " python " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    lines = [
        f"# Token beam search: in-engine fork vs `LLM.beam_search` ({args.model})", "",
        f"Command: `{cmd}`", "",
        f"- machine: {platform.node()} / {platform.machine()} / {os.cpu_count()} CPUs (shared), {platform.platform()}",
        f"- vLLM {getattr(vllm, '__version__', '?')}, model `{Path(model).name}` (dtype from the model), eager, "
        "in-process engine core, prefix caching on, CPU block size 128; one engine for both methods",
        f"- load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (other work shared the machine)",
        f"- workload: {args.prompts} prompts, {args.max_tokens} new tokens, one batch per method and width, "
        "prefix cache reset before each timed run, after one warm-up of each",
        "",
        "| width | ours wall (s) | LLM.beam_search wall (s) | **speedup (wall)** | ours CPU (s) | "
        "LLM.beam_search CPU (s) | speedup (CPU) | ours: tokens computed / prompt tokens / shared by forks (forks) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['width']} | {r['ours_wall']:.2f} | {r['vllm_wall']:.2f} | **{r['vllm_wall'] / r['ours_wall']:.1f}x** | "
            f"{r['ours_cpu']:.2f} | {r['vllm_cpu']:.2f} | {r['vllm_cpu'] / max(r['ours_cpu'], 1e-9):.1f}x | "
            f"{r['computed']} / {r['prompt']} / {r['shared']} ({r['forks']} forks, {r['recompute_forks']} recomputed) |")
    lines += ["", "Ours: `SamplingParams(max_tokens=..., extra_args={\"ttc\": {\"beam\": {\"width\": W}}})` on "
              "`LLM(..., scheduler_cls=\"" + SCHEDULER + "\")`; theirs: `LLM.beam_search(prompts, "
              "BeamSearchParams(beam_width=W, max_tokens=...))` on the same engine. The two rank hypotheses "
              "slightly differently (vLLM's length penalty counts prompt tokens, EOS candidates of any rank "
              "finish, no early stopping), so their answers may differ; the work per step is the same: "
              "2*W candidate tokens per live beam.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
