"""How much KV a served search holds and what a router sees, at 8, 64 and 1,000 GPUs, computed from
measured per-search figures (a ``ttc bench`` run) and each model's KV bytes per token.

    python benchmarks/sizing.py --bench benchmarks/results/sizing-smollm2/bench.json \\
        --write benchmarks/results/sizing-smollm2/sizing.md

Inputs:

- **per search**, measured (``bench.json``, one row per method and width, means over its problems):
  the KV tokens its live branches held at their peak with shared prefixes stored once (what
  in-engine forks and prefix sharing hold: ``peak_kv_tokens_mean``) and with every branch holding
  its whole sequence (no sharing: ``peak_kv_tokens_unshared_mean``); its engine requests
  (``model_calls``) and generated tokens. The search's shape (width, steps, step length) is the
  run's; a stronger model writes other lengths, so rerun ``ttc bench`` on yours for its figures.
- **per token**: the model's KV bytes, 2 (K and V) x layers x KV heads x head dim x bytes per value,
  from its ``config.json`` (``--model NAME=PATH``) or given (``--model NAME=LAYERS,KV_HEADS,HEAD_DIM,BYTES``).
- **per GPU**: the KV memory it gives to searches (``--kv-gib-per-gpu``; an input, not a measurement:
  an 80 GB GPU serving an 8B model in bf16 has about 60 GiB left after weights and activations).

Outputs per model, method and width: KV per search with and without sharing, searches that fit in
one GPU's KV at once, searches in flight at 8, 64 and 1,000 GPUs (data parallel, one replica per
GPU), and the HTTP requests a router sees per search: one for a served search (``ttc.search``), one
per engine request for the same search driven round by round over HTTP.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

GIB = 2**30
GPUS = (8, 64, 1000)
#: (layers, KV heads, head dim, bytes per value) from the model's published config.json, bf16 (a
#: model that needs tensor parallelism divides its KV over the ranks: size per replica, not per GPU)
PUBLISHED = {"Llama-3.1-8B bf16": (32, 8, 128, 2)}


def kv_bytes_per_token(layers: int, kv_heads: int, head_dim: int, bytes_per_value: int) -> int:
    return 2 * layers * kv_heads * head_dim * bytes_per_value


def model_from_config(path: Path, bytes_per_value: int) -> tuple[int, int, int, int]:
    cfg = json.loads((path / "config.json").read_text())
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    return cfg["num_hidden_layers"], cfg.get("num_key_value_heads", heads), head_dim, bytes_per_value


def parse_model(spec: str) -> tuple[str, tuple[int, int, int, int]]:
    name, _, value = spec.partition("=")
    if os.path.isdir(value):
        return name, model_from_config(Path(value), 4 if "float32" in name or "fp32" in name else 2)
    layers, kv_heads, head_dim, nbytes = (int(x) for x in value.split(","))
    return name, (layers, kv_heads, head_dim, nbytes)


def sizing_rows(rows: list[dict], models: dict[str, tuple[int, int, int, int]], kv_gib: float) -> list[dict]:
    out = []
    for name, shape in models.items():
        per_token = kv_bytes_per_token(*shape)
        for r in rows:
            if r["kind"] != "search" or not r.get("peak_kv_tokens_unshared_mean"):
                continue
            n = r["n"]
            shared, unshared = r["peak_kv_tokens_mean"], r["peak_kv_tokens_unshared_mean"]
            fit = int(kv_gib * GIB // (shared * per_token))
            fit_unshared = int(kv_gib * GIB // (unshared * per_token))
            out.append({"model": name, "kv_bytes_per_token": per_token, "method": r["method"], "width": r["width"],
                        "kv_tokens_shared": shared, "kv_tokens_unshared": unshared,
                        "kv_mib_shared": shared * per_token / 2**20, "kv_mib_unshared": unshared * per_token / 2**20,
                        "searches_per_gpu": fit, "searches_per_gpu_unshared": fit_unshared,
                        "in_flight": {g: g * fit for g in GPUS},
                        "engine_requests_per_search": r["model_calls"] / n,
                        "generated_per_search": r["tokens_generated"] / n})
    return out


def markdown(rows: list[dict], kv_gib: float, source: str) -> str:
    head = ("| model (KV B/token) | method | k | KV tokens / search shared (unshared) | KV MiB / search shared "
            "(unshared) | searches per GPU shared (unshared) | in flight at " + " / ".join(f"{g:,}" for g in GPUS)
            + " GPUs | router requests / search: served (round by round) |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in rows:
        lines.append(
            f"| {s['model']} ({s['kv_bytes_per_token']:,}) | {s['method']} | {s['width']} "
            f"| {s['kv_tokens_shared']:.0f} ({s['kv_tokens_unshared']:.0f}) "
            f"| {s['kv_mib_shared']:.1f} ({s['kv_mib_unshared']:.1f}) "
            f"| {s['searches_per_gpu']:,} ({s['searches_per_gpu_unshared']:,}) "
            f"| {' / '.join(f'{v:,}' for v in s['in_flight'].values())} "
            f"| 1 ({s['engine_requests_per_search']:.1f}) |")
    return (f"Per-search figures measured in `{source}`; {kv_gib:g} GiB of KV per GPU for searches (an input); "
            "one replica per GPU. Searches per GPU is what the KV pool holds at once; the engine's batch limit "
            "(`max_num_seqs`, `--max-running-requests`) and its compute bound concurrency well before that.\n\n"
            + "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", type=Path, required=True, help="a ttc bench run's bench.json")
    ap.add_argument("--model", action="append", default=[],
                    help="NAME=PATH (a model directory with config.json) or NAME=LAYERS,KV_HEADS,HEAD_DIM,BYTES")
    ap.add_argument("--kv-gib-per-gpu", type=float, default=60.0)
    ap.add_argument("--write", type=Path, default=None)
    args = ap.parse_args()
    doc = json.loads(args.bench.read_text())
    models = dict(parse_model(m) for m in args.model) if args.model else {}
    if not models:
        models = {"SmolLM2-135M float32": model_from_config(Path(doc["config"]["model"]), 4)}
    models.update({k: v for k, v in PUBLISHED.items() if k not in models})
    rows = sizing_rows(doc["rows"], models, args.kv_gib_per_gpu)
    text = markdown(rows, args.kv_gib_per_gpu, str(args.bench))
    print(text)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(f"Command: `python {shlex.join(['benchmarks/sizing.py', *sys.argv[1:]])}`\n\n" + text)


if __name__ == "__main__":
    main()
