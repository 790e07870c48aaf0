"""Training TTC adapters on a frozen Hugging Face transformers model (``ttc adapter train``).

The base model is frozen; one adapter per chosen decoder layer is inserted there
(:func:`.hf.attached`) and trained on ``{prompt, completion}`` pairs with the loss on the
completion's tokens only: a bundled problem family's train split (the prompt ``ttc run`` sends,
the family's worked solution as the completion) or a JSONL file. Each sequence of a batch plans
over a horizon drawn from ``horizons``, so one adapter serves every horizon it was trained at.
A standard loop: AdamW, linear warm-up then cosine decay, gradient clipping, float32 or bfloat16
autocast, a progress bar, a checkpoint every N steps (resumable), the dev loss every M steps.
Output: ``<out>/adapter.safetensors`` (format 2: every layer's adapter, the base model, the
horizon range) and ``<out>/train_log.jsonl``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from .adapter import TTCAdapter, save_adapters
from .config import AdapterFile, TTCAdapterConfig, base_model_mismatch
from .hf import attached, decoder_layers

ADAPTER_FILE = "adapter.safetensors"
LOG_FILE = "train_log.jsonl"
CHECKPOINTS = "checkpoints"
IGNORE = -100  # label of a token the loss skips (prompt, padding)


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str


def bundled_examples(problems: str, split: str, n: int, seed: int = 0) -> list[Example]:
    """``n`` problems of a bundled family's split: the prompt ``ttc run`` sends, the worked
    solution (one step per line) as the completion."""
    from ..problems import load_problems

    return [Example(p.prompt, "\n".join(p.solution)) for p in load_problems(problems, n=n, seed=seed, split=split)]


def jsonl_examples(path: str | Path) -> list[Example]:
    """``{"prompt": ..., "completion": ...}`` per line (blank lines skipped).

    :raises ValueError: naming the file and line of the first bad record.
    """
    out = []
    for no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{no}: not JSON ({exc.msg})") from None
        if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in ("prompt", "completion")):
            raise ValueError(f'{path}:{no}: expected {{"prompt": "...", "completion": "..."}} with string values')
        out.append(Example(rec["prompt"], rec["completion"]))
    if not out:
        raise ValueError(f"{path}: no examples")
    return out


def prompt_ids(tokenizer: Any, prompt: str, *, chat: bool) -> list[int]:
    """The prompt's tokens as ``ttc run`` sends it: chat-templated (with the generation prompt)
    when ``chat`` and the tokenizer has a template, else as is."""
    if chat and getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                               tokenize=False)
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def encode(tokenizer: Any, ex: Example, *, chat: bool, max_length: int) -> tuple[list[int], list[int]]:
    """``(input ids, labels)``: the prompt (:func:`prompt_ids`) labelled IGNORE, then the
    completion and EOS, cut to ``max_length``."""
    p = prompt_ids(tokenizer, ex.prompt, chat=chat)
    c = tokenizer(ex.completion, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        c = c + [tokenizer.eos_token_id]
    ids = (p + c)[:max_length]
    labels = ([IGNORE] * len(p) + c)[:max_length]
    return ids, labels


def collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@dataclass
class TrainSettings:
    model: Path
    out: Path
    layers: tuple[int, ...]
    problems: str | None = "add-sub"
    data: Path | None = None  # JSONL instead of a bundled family
    dev_data: Path | None = None
    train_n: int = 1000
    dev_n: int = 64
    horizons: tuple[int, ...] = (1, 4, 16, 64)
    steps: int = 200
    batch_size: int = 8
    lr: float = 1e-3
    warmup_steps: int = 20
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    bf16: bool = False
    checkpoint_every: int = 50
    eval_every: int = 50
    max_length: int = 256
    chat: bool = True
    seed: int = 0
    resume: bool = False
    adapter: dict[str, int] = field(default_factory=lambda: {"heads": 8, "state_dim": 16, "control_dim": 16,
                                                              "b_rank": 16, "q_rank": 16})

    def check(self) -> None:
        """:raises ValueError: naming the setting to fix."""
        if not self.layers:
            raise ValueError("layers: name at least one decoder layer")
        if not self.horizons or min(self.horizons) < 1 or max(self.horizons) > 1024:
            raise ValueError("horizons: each must be in 1..1024")
        for name in ("steps", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1")
        if self.data is None and self.problems is None:
            raise ValueError("data: give a JSONL file or a bundled problem family")


@dataclass
class TrainResult:
    adapter_path: Path
    steps: int
    losses: list[float]
    dev_losses: dict[int, float]
    seconds: float


def base_model_info(model: Any, model_dir: Path) -> dict[str, Any]:
    c = model.config
    return {"name": model_dir.name, "model_type": getattr(c, "model_type", None), "hidden_size": c.hidden_size,
            "num_hidden_layers": c.num_hidden_layers, "vocab_size": c.vocab_size}


def check_base_model(info: AdapterFile, model: Any) -> None:
    """:raises ValueError: the file's adapters were trained for another base model (naming both)."""
    c = model.config
    why = base_model_mismatch(info, hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
                              vocab_size=c.vocab_size, model_type=getattr(c, "model_type", None))
    if why is not None:
        raise ValueError(f"{info.path}: {why}")


def load_frozen(model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True, torch_dtype=torch.float32)
    model.eval().requires_grad_(False)
    return model, tok


def dev_loss(model: Any, adapters: dict[int, TTCAdapter], rows: Sequence[tuple[list[int], list[int]]], pad_id: int,
             horizon: int, batch_size: int, bf16: bool = False) -> float:
    """Mean loss per completion token over ``rows`` with every sequence at ``horizon`` (0 = off)."""
    total, count = 0.0, 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(rows), batch_size):
            batch = collate(rows[i : i + batch_size], pad_id)
            with attached(model, adapters, horizon):
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            y = batch["labels"][:, 1:]
            lp = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), y, ignore_index=IGNORE,
                                                   reduction="sum")
            total, count = total + float(lp), count + int((y != IGNORE).sum())
    return total / max(1, count)


def _batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[list[int]]:
    """Index batches over shuffled epochs, forever (the generator's state makes it resumable)."""
    while True:
        order = torch.randperm(n, generator=gen).tolist()
        for i in range(0, n - n % batch_size or n, batch_size):
            yield order[i : i + batch_size]


def _latest_checkpoint(out: Path) -> Path | None:
    steps = sorted((int(p.name.split("-")[1]), p) for p in (out / CHECKPOINTS).glob("step-*")
                   if (p / "state.pt").is_file())
    return steps[-1][1] if steps else None


def train(s: TrainSettings, *, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train and write ``<out>/adapter.safetensors``; ``on_step(step, loss)`` after each step."""
    from transformers import get_cosine_schedule_with_warmup

    s.check()
    torch.manual_seed(s.seed)
    model, tok = load_frozen(s.model)
    n_layers = len(decoder_layers(model))
    bad = [i for i in s.layers if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"layers: {bad} not in the model's decoder layers 0..{n_layers - 1}")
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    if s.data is not None:
        train_ex = jsonl_examples(s.data)
        dev_ex = jsonl_examples(s.dev_data) if s.dev_data else []
    else:
        train_ex = bundled_examples(s.problems, "train", s.train_n, s.seed)
        dev_ex = bundled_examples(s.problems, "dev", s.dev_n, s.seed) if s.dev_n else []
    rows = [encode(tok, e, chat=s.chat, max_length=s.max_length) for e in train_ex]
    dev_rows = [encode(tok, e, chat=s.chat, max_length=s.max_length) for e in dev_ex]

    config = TTCAdapterConfig(hidden_size=model.config.hidden_size, **s.adapter)
    adapters = {i: TTCAdapter(config) for i in sorted(set(s.layers))}
    params = [p for a in adapters.values() for p in a.parameters()]
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, min(s.warmup_steps, s.steps), s.steps)
    gen = torch.Generator().manual_seed(s.seed)
    start = 0
    s.out.mkdir(parents=True, exist_ok=True)
    log_path = s.out / LOG_FILE
    ckpt = _latest_checkpoint(s.out) if s.resume else None
    if ckpt is not None:
        for i, a in adapters.items():
            a.load_state_dict(TTCAdapter.load(ckpt / ADAPTER_FILE, layer=i).state_dict())
        state = torch.load(ckpt / "state.pt", weights_only=True)  # written by us: tensors and numbers only
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        start = int(state["step"])
    elif log_path.exists():
        log_path.unlink()  # a fresh run's log

    base = base_model_info(model, s.model)
    horizon_range = (min(s.horizons), max(s.horizons))
    horizons = torch.tensor(s.horizons)
    losses: list[float] = []
    dev_losses: dict[int, float] = {}
    batches = _batches(len(rows), min(s.batch_size, len(rows)), gen)
    t0 = time.perf_counter()
    for a in adapters.values():
        a.train()
    for step in range(start, s.steps):
        idx = next(batches)
        batch = collate([rows[i] for i in idx], pad_id)
        T = horizons[torch.randint(len(horizons), (len(idx),), generator=gen)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16), attached(model, adapters, T):
            loss = model(**batch).loss
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"step {step + 1}: loss is {value}; lower --lr or use float32")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(value)
        record: dict[str, Any] = {"step": step + 1, "loss": value, "lr": sched.get_last_lr()[0]}
        done = step + 1
        if dev_rows and s.eval_every and (done % s.eval_every == 0 or done == s.steps):
            dev_losses[done] = record["dev_loss"] = dev_loss(model, adapters, dev_rows, pad_id, max(s.horizons),
                                                             s.batch_size, s.bf16)
        with log_path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if s.checkpoint_every and done % s.checkpoint_every == 0 and done < s.steps:
            d = s.out / CHECKPOINTS / f"step-{done}"
            d.mkdir(parents=True, exist_ok=True)
            save_adapters(d / ADAPTER_FILE, adapters, base_model=base, horizon=horizon_range)
            torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "generator": gen.get_state(), "step": done}, d / "state.pt")
        if on_step is not None:
            on_step(done, value)
    path = s.out / ADAPTER_FILE
    save_adapters(path, adapters, base_model=base, horizon=horizon_range)
    (s.out / "train_settings.json").write_text(json.dumps(asdict(s), default=str, indent=1))
    return TrainResult(path, s.steps, losses, dev_losses, time.perf_counter() - t0)


def evaluate(model_dir: Path, adapter_path: Path, problems: str, split: str, n: int, horizons: Sequence[int], *,
             max_new_tokens: int = 64, chat: bool = True, seed: int = 0) -> dict[int, list[bool]]:
    """Greedy accuracy per horizon (0 = the adapter off) on ``n`` problems of a bundled split:
    ``{horizon: [correct per problem]}``, HF transformers in float32."""
    from ..problems import load_problems
    from .config import read_adapter_file

    info = read_adapter_file(adapter_path)
    model, tok = load_frozen(model_dir)
    check_base_model(info, model)
    layers = info.layers if info.layers is not None else ()
    adapters = {i: TTCAdapter.load(adapter_path, layer=i).eval() for i in layers}
    probs = load_problems(problems, n=n, seed=seed, split=split)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    out: dict[int, list[bool]] = {}
    for h in horizons:
        got = []
        for p in probs:
            ids = prompt_ids(tok, p.prompt, chat=chat)
            with torch.no_grad(), attached(model, adapters if h else {}, h):
                gen_ids = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False,
                                         pad_token_id=pad_id)
            got.append(bool(p.check(tok.decode(gen_ids[0, len(ids):], skip_special_tokens=True))))
        out[h] = got
    return out
