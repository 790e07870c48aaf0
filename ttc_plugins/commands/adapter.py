"""``ttc adapter``: train a TTC adapter on a frozen model with HF transformers, describe an adapter
file, and measure its accuracy with the adapter off and on (the engines serve the same file:
``additional_config.ttc.ttc_layers``).

    ttc adapter train --layers 12 [--problems add-sub | --data train.jsonl] [--steps 200] --out DIR
    ttc adapter info DIR/adapter.safetensors
    ttc adapter eval DIR/adapter.safetensors [--problems add-sub --split test --n 50 --horizons 0,1,4,16,64]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

adapter_app = typer.Typer(help="Train, describe and evaluate TTC adapters (HF transformers).", no_args_is_help=True)


def _ints(text: str, option: str, *, low: int) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r}: comma-separated integers expected", param_hint=option) from None
    if not values or min(values) < low:
        raise typer.BadParameter(f"{text!r}: integers >= {low} expected", param_hint=option)
    return values


def _model(model: Optional[Path]) -> Path:
    if model is None:
        from ..model import default_model_path

        return default_model_path()
    if not (model / "config.json").is_file():
        raise typer.BadParameter(f"{model}: not a model directory (no config.json)", param_hint="--model")
    return model


@adapter_app.command("train")
def train(
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (adapter, log, checkpoints)."),
    layers: str = typer.Option(..., "--layers", help="Comma-separated decoder layers to insert adapters after."),
    problems: str = typer.Option("add-sub", "--problems", "-p", help="Bundled family: its train split (dev for "
                                 "the dev loss)."),
    data: Optional[Path] = typer.Option(None, "--data", help='JSONL of {"prompt", "completion"} instead.'),
    dev_data: Optional[Path] = typer.Option(None, "--dev-data", help="JSONL for the dev loss (with --data)."),
    train_n: int = typer.Option(1000, "--train-n", min=1, help="Training problems from the family."),
    horizons: str = typer.Option("1,4,16,64", "--horizons", help="Horizons sampled per sequence."),
    steps: int = typer.Option(200, "--steps", min=1),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr", min=0.0),
    warmup: int = typer.Option(20, "--warmup", min=0, help="Linear warm-up steps, then cosine decay."),
    weight_decay: float = typer.Option(0.0, "--weight-decay", min=0.0),
    max_grad_norm: float = typer.Option(1.0, "--max-grad-norm", min=0.0),
    bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast (float32 by default)."),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", min=0, help="0: no checkpoints."),
    eval_every: int = typer.Option(50, "--eval-every", min=0, help="Dev loss every N steps (0: only at the end)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --out."),
    heads: int = typer.Option(8, "--heads", min=1),
    state_dim: int = typer.Option(16, "--state-dim", min=1, max=128),
    control_dim: int = typer.Option(16, "--control-dim", min=1, max=128),
    seed: int = typer.Option(0, "--seed", min=0),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Base model directory (default: the default "
                                         "model)."),
    raw: bool = typer.Option(False, "--raw", help="Prompts without the chat template."),
) -> None:
    """Train TTC adapters on a frozen model; writes OUT/adapter.safetensors."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..ttc_layer.train import TrainSettings, train as run_training

    settings = TrainSettings(
        model=_model(model), out=out, layers=_ints(layers, "--layers", low=0), problems=None if data else problems,
        data=data, dev_data=dev_data, train_n=train_n, horizons=_ints(horizons, "--horizons", low=1), steps=steps,
        batch_size=batch_size, lr=lr, warmup_steps=warmup, weight_decay=weight_decay, max_grad_norm=max_grad_norm,
        bf16=bf16, checkpoint_every=checkpoint_every, eval_every=eval_every, chat=not raw, seed=seed, resume=resume,
        adapter={"heads": heads, "state_dim": state_dim, "control_dim": control_dim, "b_rank": 16, "q_rank": 16})
    try:
        settings.check()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console = Console(stderr=True)
    with Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("train", total=steps, loss="-")
        try:
            result = run_training(settings, on_step=lambda s, loss: progress.update(task, completed=s,
                                                                                      loss=f"{loss:.4f}"))
        except ValueError as exc:  # a setting the model or data refuse (layer out of range, bad JSONL)
            raise typer.BadParameter(str(exc)) from None
    dev = ", ".join(f"step {k}: {v:.4f}" for k, v in result.dev_losses.items())
    console.print(f"{result.steps} steps in {result.seconds:.0f} s; final loss {result.losses[-1]:.4f}"
                  + (f"; dev loss {dev}" if dev else ""), highlight=False)
    print(result.adapter_path)


@adapter_app.command("info")
def info(path: Path = typer.Argument(..., help="An adapter file.")) -> None:
    """Describe an adapter file: format, shape, layers, base model, horizons, parameters."""
    import numpy as np
    from safetensors import safe_open

    from ..ttc_layer.config import read_adapter_file

    try:
        meta = read_adapter_file(path)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="PATH") from None
    with safe_open(str(path), framework="numpy") as f:
        params = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
    print(json.dumps({"path": str(path), "format": meta.format, "config": meta.config.__dict__,
                      "layers": list(meta.layers) if meta.layers is not None else "any (format 1)",
                      "base_model": meta.base_model, "horizon": meta.horizon, "parameters": params}, indent=1))


@adapter_app.command("eval")
def evaluate(
    path: Path = typer.Argument(..., help="An adapter file (format 2: its layers)."),
    problems: str = typer.Option("add-sub", "--problems", "-p"),
    split: str = typer.Option("test", "--split"),
    n: int = typer.Option(50, "--n", min=1),
    horizons: str = typer.Option("0,1,4,16,64", "--horizons", help="0 = the adapter off (the base model)."),
    max_tokens: int = typer.Option(64, "--max-tokens", min=1),
    model: Optional[Path] = typer.Option(None, "--model", "-m"),
    raw: bool = typer.Option(False, "--raw"),
) -> None:
    """Greedy accuracy on a bundled split with the adapter off and at each horizon (HF, float32)."""
    from ..ttc_layer.train import evaluate as run_eval
    from .confidence import format_accuracy, paired_p_value_of
    from .run import load_split

    load_split(problems, n, 0, split)  # names a bad --problems / --split / --n before any model loads
    try:
        got = run_eval(_model(model), path, problems, split, n, _ints(horizons, "--horizons", low=0),
                       max_new_tokens=max_tokens, chat=not raw)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="PATH") from None
    base = got.get(0)
    for h, correct in got.items():
        line = f"horizon {h:4d}: {format_accuracy(sum(correct), len(correct))}"
        if base is not None and h:
            line += f"  vs off {sum(correct) - sum(base):+d} (paired p={paired_p_value_of(correct, base):.2g})"
        print(line)
