"""Token-level beam search on SGLang: ttc-plugins' ``ttc.beam`` vs SGLang's own beam search
(``sampling_params.beam_width``) vs (``--client-loop``) a client-side loop like vLLM's
``LLM.beam_search`` (one 1-token request per live beam per step, top ``2*W`` logprobs), on one
engine, same prompts, same width, same max tokens (not a test). The SGLang sibling of
``bench_token_beam.py`` (same prompts and timing helpers).

One ``sgl.Engine`` with the plugin (CPU settings of the integration suite, dtype from the model);
SGLang's own beam search and the loop run on it as requests without ``ttc``. Per width: one warm-up
of each method, then each method once over all prompts as one batch, the radix cache flushed before
each timed run. Reported: wall time and CPU time of the engine (this process + SGLang's scheduler
and detokenizer processes), the ratios, how often the best beams agree, and ``ttc.beam``'s KV
accounting. ``ttc.beam`` and SGLang's beam search share the same fork machinery (SGLang's member
rows); they differ in the selection/stopping rules (HF's vs SGLang's) and in the per-step work
done in Python by the plugin.

    OMP_NUM_THREADS=1 python benchmarks/bench_token_beam_sglang.py            # SmolLM2-135M, widths 4 and 8
    OMP_NUM_THREADS=1 python benchmarks/bench_token_beam_sglang.py --smoke    # tiny model, seconds
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
from bench_token_beam import PROMPTS  # noqa: E402

os.environ.setdefault("SGLANG_USE_CPU_ENGINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]


def _cpu_all() -> float:
    """CPU seconds of this process and all its children alive now (SGLang's scheduler and
    detokenizer processes run the engine)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _timed(fn):
    w, c = time.perf_counter(), _cpu_all()
    out = fn()
    return out, time.perf_counter() - w, _cpu_all() - c


def client_loop(engine, prompt_ids: list[list[int]], width: int, max_tokens: int, eos: int | None) -> list[list[int]]:
    """vLLM's ``LLM.beam_search`` algorithm over ``Engine.generate``: each step, one 1-token request
    per live beam (all prompts batched), asking for its top ``2*width`` logprobs; the radix cache
    reuses each beam's prefix. Returns each prompt's best beam (generated token ids)."""
    live = [[((), 0.0)] for _ in prompt_ids]
    done: list[list[tuple[tuple[int, ...], float]]] = [[] for _ in prompt_ids]
    for _ in range(max_tokens):
        reqs = [(i, b) for i, beams in enumerate(live) for b in beams]
        if not reqs:
            break
        outs = engine.generate(
            input_ids=[prompt_ids[i] + list(toks) for i, (toks, _) in reqs],
            sampling_params=[{"max_new_tokens": 1, "temperature": 0.0}] * len(reqs),
            return_logprob=True, top_logprobs_num=2 * width)
        cands: list[list[tuple[float, tuple[int, ...]]]] = [[] for _ in prompt_ids]
        for (i, (toks, cum)), out in zip(reqs, outs):
            for lp, tok, _ in out["meta_info"]["output_top_logprobs"][0]:
                cands[i].append((cum + lp, toks + (tok,)))
        for i, cs in enumerate(cands):
            cs.sort(key=lambda c: -c[0])
            nxt = []
            for cum, toks in cs[:width]:
                if eos is not None and toks[-1] == eos:
                    done[i].append((toks, cum))
                else:
                    nxt.append((toks, cum))
            live[i] = nxt
    best = []
    for i in range(len(prompt_ids)):
        pool = done[i] + list(live[i])
        best.append(list(max(pool, key=lambda h: h[1] / max(len(h[0]), 1))[0]) if pool else [])
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2", help="smollm2 | tiny | a model directory")
    ap.add_argument("--widths", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--prompts", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--client-loop", action="store_true", help="also time the client-side loop")
    ap.add_argument("--smoke", action="store_true", help="tiny model, 2 prompts, 8 tokens, width 2")
    ap.add_argument("--results", type=Path, help="write the markdown report here")
    args = ap.parse_args()
    if args.smoke:
        args.model, args.widths, args.prompts, args.max_tokens = "tiny", [2], 2, 8

    import sglang as sgl

    model = model_path(args.model)
    engine = sgl.Engine(model_path=model, device="cpu", attention_backend="torch_native", disable_cuda_graph=True,
                        disable_overlap_schedule=True, mem_fraction_static=0.05, max_total_tokens=32768,
                        random_seed=0, log_level="error")
    tok = engine.tokenizer_manager.tokenizer
    eos = tok.eos_token_id
    prompts = (PROMPTS * (args.prompts // len(PROMPTS) + 1))[: args.prompts]
    ids = [tok.encode(p) for p in prompts]

    def ours(width: int, n: int, max_tokens: int):
        sp = {"max_new_tokens": max_tokens, "custom_params": {"ttc": {"beam": {"width": width}}}}
        return engine.generate(input_ids=ids[:n], sampling_params=[sp] * n)

    def sglang_own(width: int, n: int, max_tokens: int):
        sp = {"max_new_tokens": max_tokens, "beam_width": width, "n": width}
        return engine.generate(input_ids=ids[:n], sampling_params=[sp] * n)

    rows = []
    for width in args.widths:
        ours(width, 2, 4), sglang_own(width, 2, 4)  # warm-up
        engine.flush_cache()
        outs, ow, oc = _timed(lambda: ours(width, len(ids), args.max_tokens))
        engine.flush_cache()
        theirs, tw, tc = _timed(lambda: sglang_own(width, len(ids), args.max_tokens))
        row = {"width": width, "ours_wall": ow, "ours_cpu": oc, "sg_wall": tw, "sg_cpu": tc}
        kv = [o["meta_info"]["ttc"]["beam"]["kv"] for o in outs]
        row.update({
            "computed": sum(k["tokens_computed"] for k in kv), "shared": sum(k["tokens_shared_by_fork"] for k in kv),
            "prompt": sum(k["prompt_tokens"] for k in kv), "forks": sum(k["forks"] for k in kv),
            "same_best_sg": sum(o["output_ids"] == t["output_ids"] for o, t in zip(outs, theirs)),
        })
        msg = (f"width {width}: ttc.beam {ow:.2f}s (cpu {oc:.2f}s), SGLang beam_width {tw:.2f}s (cpu {tc:.2f}s), "
               f"same best beam {row['same_best_sg']}/{len(ids)}")
        if args.client_loop:
            client_loop(engine, ids[:2], width, 4, eos)  # warm-up
            engine.flush_cache()
            best, lw, lc = _timed(lambda: client_loop(engine, ids, width, args.max_tokens, eos))
            row.update({"loop_wall": lw, "loop_cpu": lc,
                        "same_best_loop": sum(o["output_ids"] == b for o, b in zip(outs, best))})
            msg += f", client loop {lw:.2f}s (cpu {lc:.2f}s)"
        rows.append(row)
        print(msg, flush=True)
    engine.shutdown()

    report = _report(args, model, rows)
    print(report)
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(report)


def _report(args: argparse.Namespace, model: str, rows: list[dict]) -> str:
    import sglang

    cmd = "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "?") + " python " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    loop = args.client_loop
    lines = [
        f"# Token beam search on SGLang: `ttc.beam` vs SGLang's own beam search ({args.model})", "",
        f"Command: `{cmd}`", "",
        f"- machine: {platform.node()} / {platform.machine()} / {os.cpu_count()} CPUs (shared), {platform.platform()}",
        f"- SGLang {sglang.__version__} on CPU (`SGLANG_USE_CPU_ENGINE=1`, torch_native attention, overlap schedule "
        f"off, page size 1), model `{Path(model).name}` (dtype from the model); one engine for all methods",
        f"- load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (other work shared the machine)",
        f"- workload: {args.prompts} prompts, {args.max_tokens} new tokens, one batch per method and width, "
        "radix cache flushed before each timed run, after one warm-up of each",
        "- CPU time: this process plus SGLang's scheduler and detokenizer processes (wall time is noisy on a "
        "shared box; CPU time is not inflated by waiting for a core)",
        "",
    ]
    head = "| width | ttc.beam wall (s) | SGLang beam_width wall (s) | ttc.beam CPU (s) | SGLang CPU (s) | CPU ratio (SGLang / ttc.beam) |"
    sep = "|---|---|---|---|---|---|"
    if loop:
        head += " client loop wall (s) | client loop CPU (s) | CPU ratio (loop / ttc.beam) |"
        sep += "---|---|---|"
    head += " same best beam as SGLang | ttc.beam: tokens computed / prompt tokens / shared by forks (forks) |"
    sep += "---|---|"
    lines += [head, sep]
    for r in rows:
        line = (f"| {r['width']} | {r['ours_wall']:.2f} | {r['sg_wall']:.2f} | {r['ours_cpu']:.2f} | {r['sg_cpu']:.2f} | "
                f"{r['sg_cpu'] / max(r['ours_cpu'], 1e-9):.2f}x |")
        if loop:
            line += f" {r['loop_wall']:.2f} | {r['loop_cpu']:.2f} | {r['loop_cpu'] / max(r['ours_cpu'], 1e-9):.1f}x |"
        line += (f" {r['same_best_sg']}/{args.prompts} | {r['computed']} / {r['prompt']} / {r['shared']} "
                 f"({r['forks']} forks) |")
        lines.append(line)
    lines += ["", "`ttc.beam`: `sampling_params={\"max_new_tokens\": T, \"custom_params\": {\"ttc\": {\"beam\": "
              "{\"width\": W}}}}` (HF rules, `length_penalty` 1.0, `early_stopping` false); SGLang's own: "
              "`sampling_params={\"max_new_tokens\": T, \"beam_width\": W, \"n\": W}` (its rules: no early stopping, "
              "a stop candidate finishes while fewer than W survivors rank above it). Both run on SGLang's member-row "
              "fork (prompt KV aliased, slots remapped, nothing recomputed), so the difference is the per-step "
              "selection (TokenBeam in Python vs SGLang's tensor `joint_select`) and when each search stops; "
              "their answers may differ where the rules do."]
    if loop:
        lines += ["", "Client loop: vLLM's `LLM.beam_search` algorithm over `Engine.generate` (one 1-token request per "
                  "live beam per step with `top_logprobs_num=2W`, prefixes from SGLang's radix cache)."]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
