"""What a trained TTC adapter does on the default model, against a plain MLP adapter and LoRA with
the same number of trainable parameters, the same data and the same steps; and what it costs per
decode step on vLLM at each horizon.

    OMP_NUM_THREADS=1 python benchmarks/bench_ttc_adapter.py --problems compare --layer 15 --steps 150 \\
        --out /tmp/ttc-adapter --write benchmarks/results/ttc-adapter-smollm2/README.md
    python benchmarks/bench_ttc_adapter.py --model tiny --problems compare --layer 1 --steps 2 --test-n 4 \\
        --adapter heads=2,state_dim=8,control_dim=8,b_rank=4,q_rank=4 --horizons 1,4 --no-vllm --out /tmp/x  # smoke

1. **TTC adapter**: ``ttc adapter train``'s loop (:func:`ttc_plugins.ttc_layer.train.train`) at one
   decoder layer, each sequence at a horizon drawn from ``--horizons``.
2. **MLP adapter** at the same layer: ``x + gate * W2 gelu(W1 x)`` (gate zero-initialised, like the
   TTC adapter's), its width chosen so its parameter count matches the TTC adapter's.
3. **LoRA** (``peft``) on every linear map of the same decoder layer, its rank chosen to match.

All three: the frozen model in float32, the bundled family's train split as ``{prompt,
completion}`` (loss on the completion), AdamW at ``--lr``, linear warm-up then cosine, clipping at 1,
the same batches in the same order. Test-split greedy accuracy (HF transformers, batched, float32)
with the adapter off (the base model) and at each horizon, each with a 95% Wilson interval and a
paired exact test against the base model. Then the decode-step cost on vLLM CPU: the trained file
served at that layer, one batch of requests at each horizon (0 = off), seconds per output token.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_models, also under PYTHONSAFEPATH=1

import torch  # noqa: E402


class MLPAdapter(torch.nn.Module):
    """The plain baseline: a gated residual MLP after one decoder layer (no planning, no horizon)."""

    def __init__(self, hidden: int, width: int):
        super().__init__()
        self.up = torch.nn.Linear(hidden, width)
        self.down = torch.nn.Linear(width, hidden)
        self.gate = torch.nn.Parameter(torch.zeros(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate * self.down(torch.nn.functional.gelu(self.up(x)))


@contextlib.contextmanager
def mlp_attached(model: Any, layer: int, mlp: MLPAdapter):
    from ttc_plugins.ttc_layer.hf import decoder_layers

    def hook(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        new = h + mlp(h).to(h.dtype)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def n_params(params) -> int:
    return sum(p.numel() for p in params)


def lora_model(model: Any, layer: int, target: int) -> tuple[Any, int]:
    """``peft`` LoRA on every linear map of decoder layer ``layer``, the rank whose trainable
    parameter count is nearest ``target``."""
    from peft import LoraConfig, get_peft_model

    from ttc_plugins.ttc_layer.hf import decoder_layers

    block = decoder_layers(model)[layer]
    linears = [m for m in block.modules() if isinstance(m, torch.nn.Linear)]
    per_rank = sum(m.in_features + m.out_features for m in linears)
    rank = max(1, round(target / per_rank))
    prefix = next(n for n, m in model.named_modules() if m is block)
    names = [f"{prefix}.{n}" for n, m in block.named_modules() if isinstance(m, torch.nn.Linear)]
    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=names, lora_dropout=0.0, bias="none")
    return get_peft_model(model, cfg), rank


def fit(model: Any, params: list, context: Callable[[], Any], rows, pad_id: int, args) -> tuple[list[float], float]:
    """The TTC trainer's loop for a module without a horizon: same batches, schedule, clipping."""
    from transformers import get_cosine_schedule_with_warmup

    from ttc_plugins.ttc_layer.train import _batches, collate

    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, min(args.warmup, args.steps), args.steps)
    gen = torch.Generator().manual_seed(args.seed)
    batches = _batches(len(rows), min(args.batch_size, len(rows)), gen)
    losses, t0 = [], time.perf_counter()
    for _ in range(args.steps):
        idx = next(batches)
        torch.randint(len(args.horizons), (len(idx),), generator=gen)  # keep the TTC run's generator stream
        with context():
            loss = model(**collate([rows[i] for i in idx], pad_id)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return losses, time.perf_counter() - t0


def greedy_accuracy(model: Any, tok: Any, probs, context: Callable[[], Any], max_new: int, batch: int) -> list[bool]:
    """Batched greedy generation (left padding), each answer checked by the family's checker."""
    from ttc_plugins.ttc_layer.train import prompt_ids

    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    got: list[bool] = []
    for i in range(0, len(probs), batch):
        chunk = probs[i:i + batch]
        ids = [prompt_ids(tok, p.prompt, chat=True) for p in chunk]
        width = max(map(len, ids))
        x = torch.full((len(ids), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(x)
        for j, row in enumerate(ids):
            x[j, width - len(row):], mask[j, width - len(row):] = torch.tensor(row), 1
        with torch.no_grad(), context():
            out = model.generate(input_ids=x, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                                 pad_token_id=pad_id)
        got += [bool(p.check(tok.decode(o[width:], skip_special_tokens=True))) for p, o in zip(chunk, out)]
    return got


def decode_cost(model_dir: str, adapter: str, layer: int, horizons: list[int], prompts: list[str], max_tokens: int):
    """Seconds per output token on vLLM CPU at each horizon (0 = off): one batch per horizon."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=model_dir, enforce_eager=True, dtype="float32", max_model_len=1024, seed=0,
              kv_cache_memory_bytes=512 * 2**20,
              additional_config={"ttc": {"ttc_layers": {str(layer): adapter}}})
    out = {}
    for h in [0, *horizons, 0]:  # off first and last: the box did not drift in between
        ttc = {"control": {"name": "ttc_layer", "layers": [layer], "horizon": h}} if h else None
        sp = SamplingParams(max_tokens=max_tokens, min_tokens=max_tokens, temperature=0.0,
                            extra_args=None if ttc is None else {"ttc": ttc})
        t0 = time.perf_counter()
        res = llm.generate(prompts, sp, use_tqdm=False)
        wall = time.perf_counter() - t0
        tokens = sum(len(r.outputs[0].token_ids) for r in res)
        out.setdefault(h, []).append(wall / tokens)
    return {h: min(v) for h, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--problems", default="compare")
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--train-n", type=int, default=1000)
    ap.add_argument("--test-n", type=int, default=100)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--horizons", default="1,4,16,64")
    ap.add_argument("--adapter", default="", help="TTC adapter shape, key=value,... (default: the trainer's)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--eval-batch", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-vllm", action="store_true", help="skip the decode-step cost")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--write", type=Path, default=None)
    args = ap.parse_args(argv)
    args.horizons = [int(h) for h in args.horizons.split(",")]
    load0 = os.getloadavg()[0]

    from bench_models import model_path

    from ttc_plugins.commands.confidence import format_accuracy, paired_p_value_of
    from ttc_plugins.problems import load_problems
    from ttc_plugins.ttc_layer.adapter import TTCAdapter
    from ttc_plugins.ttc_layer.hf import attached
    from ttc_plugins.ttc_layer.train import TrainSettings, bundled_examples, encode, load_frozen, train

    model_dir = Path(model_path(args.model))
    shape = {k: int(v) for k, v in (kv.split("=") for kv in args.adapter.split(",") if kv)}
    settings = TrainSettings(model=model_dir, out=args.out / "ttc", layers=(args.layer,), problems=args.problems,
                             train_n=args.train_n, dev_n=0, horizons=tuple(args.horizons), steps=args.steps,
                             batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup, checkpoint_every=0,
                             eval_every=0, seed=args.seed, **({"adapter": shape} if shape else {}))
    ttc = train(settings)
    adapter = TTCAdapter.load(ttc.adapter_path, layer=args.layer).eval()
    target = n_params(adapter.parameters())

    model, tok = load_frozen(model_dir)
    hidden = model.config.hidden_size
    torch.manual_seed(args.seed)
    width = max(1, round((target - 2 * hidden) / (2 * hidden + 1)))
    mlp = MLPAdapter(hidden, width)
    rows = [encode(tok, e, chat=True, max_length=256)
            for e in bundled_examples(args.problems, "train", args.train_n, args.seed)]
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    mlp_losses, mlp_s = fit(model, list(mlp.parameters()), lambda: mlp_attached(model, args.layer, mlp), rows,
                            pad_id, args)
    mlp.eval()

    probs = load_problems(args.problems, n=args.test_n, seed=args.seed, split="test")
    acc: dict[str, list[bool]] = {}
    acc["base (adapter off)"] = greedy_accuracy(model, tok, probs, contextlib.nullcontext, args.max_new_tokens,
                                                args.eval_batch)
    for h in args.horizons:
        acc[f"TTC adapter, horizon {h}"] = greedy_accuracy(
            model, tok, probs, lambda h=h: attached(model, {args.layer: adapter}, h), args.max_new_tokens,
            args.eval_batch)
    acc["MLP adapter"] = greedy_accuracy(model, tok, probs, lambda: mlp_attached(model, args.layer, mlp),
                                         args.max_new_tokens, args.eval_batch)

    lora, rank = lora_model(model, args.layer, target)
    lora_params = [p for p in lora.parameters() if p.requires_grad]
    lora_losses, lora_s = fit(lora, lora_params, contextlib.nullcontext, rows, pad_id, args)
    lora.eval()
    acc["LoRA"] = greedy_accuracy(lora, tok, probs, contextlib.nullcontext, args.max_new_tokens, args.eval_batch)

    cost = {}
    if not args.no_vllm:
        prompts = [p.prompt for p in probs[:16]]
        cost = decode_cost(str(model_dir), str(ttc.adapter_path), args.layer, args.horizons, prompts, 32)

    base = acc["base (adapter off)"]
    trained = {"TTC adapter": (target, ttc.seconds, ttc.losses), "MLP adapter": (n_params(mlp.parameters()), mlp_s,
                                                                               mlp_losses),
               "LoRA": (n_params(lora_params), lora_s, lora_losses)}
    lines = ["# TTC adapter vs MLP adapter vs LoRA on the default model", "",
             f"- command: `{shlex.join(['python', 'benchmarks/bench_ttc_adapter.py', *(argv or sys.argv[1:])])}`",
             f"- machine: {os.cpu_count()} CPUs, load average {load0:.2f} at the start, "
             f"{os.getloadavg()[0]:.2f} at the end; torch {torch.__version__}",
             f"- model `{model_dir.name}`, decoder layer {args.layer}; `{args.problems}` train split "
             f"({len(rows)} problems, {args.steps} steps of {args.batch_size}, lr {args.lr}, warm-up {args.warmup}, "
             f"cosine); test split {len(probs)} problems, greedy, {args.max_new_tokens} new tokens, HF float32",
             f"- TTC adapter trained at horizons {args.horizons} (one drawn per sequence); MLP width {width}; "
             f"LoRA rank {rank} on every linear map of the layer", "",
             "| adapter | trainable parameters | training (s) | first / last 10 steps' mean loss |",
             "|---|---:|---:|---:|"]
    for name, (count, secs, losses) in trained.items():
        head, tail = sum(losses[:10]) / len(losses[:10]), sum(losses[-10:]) / len(losses[-10:])
        lines.append(f"| {name} | {count:,} | {secs:.0f} | {head:.3f} / {tail:.3f} |")
    lines += ["", "| test accuracy | accuracy [95% CI] | vs base (paired exact p) |", "|---|---:|---:|"]
    for name, got in acc.items():
        diff = "" if got is base else f"{100 * (sum(got) - sum(base)) / len(base):+.0f} points, p={paired_p_value_of(got, base):.2g}"
        lines.append(f"| {name} | {format_accuracy(sum(got), len(got))} | {diff} |")
    if cost:
        lines += ["", "Decode-step cost on vLLM CPU (16 requests x 32 tokens, eager, float32; the best of two "
                  "batches at horizon 0):", "", "| horizon | ms per output token | vs off |", "|---:|---:|---:|"]
        for h, s in sorted(cost.items()):
            lines.append(f"| {h} | {1000 * s:.1f} | {s / cost[0]:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps({"accuracy": acc, "decode_s_per_token": cost,
                                                      "trained": {k: v[:2] for k, v in trained.items()}}, indent=1))
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)
    return 0 if all(math.isfinite(v[2][-1]) for v in trained.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
