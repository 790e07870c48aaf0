"""Tiny random models built on the fly (seconds, no hub): what every engine test runs on.

* :func:`build_tiny_llama` — a random ``LlamaForCausalLM`` plus a byte-level BPE tokenizer trained
  offline on a generated corpus, with bos/eos/pad and a ChatML chat template.
* :func:`build_tiny_qwen2_prm` — ``config.json`` of a tiny ``Qwen2ForProcessRewardModel`` and a
  tokenizer with a step tag token, for dummy-weight loading (``load_format="dummy"``).
* :func:`build_tiny_llama_gguf` — the tiny Llama written as a GGUF file (as llama.cpp lays it
  out), to exercise the default model's GGUF conversion without the 135M model.

Everything is deterministic for its parameters (same tokenizer, same weights, byte for byte, on a
given torch/tokenizers version) and cached under ``<cache>/tiny/<parameters>``, built by one
process at a time (a file lock) and published by atomic rename. Pass ``path`` to build elsewhere.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from typing import Any

from ..model.cache import build_once, cache_root, read_manifest
from ..model.convert import quiet_transformers

RECIPE = 1  # bump when anything below changes what is built

BOS, EOS, PAD, UNK = "<|im_start|>", "<|im_end|>", "<|pad|>", "<|endoftext|>"
SPECIAL_TOKENS = [UNK, BOS, EOS, PAD]  # ids 0..3
BOS_ID, EOS_ID, PAD_ID, UNK_ID = 1, 2, 3, 0
PRM_STEP_TAG = "<extra_0>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_WORDS = (
    "the of and to in is it that for on with as was at by be this are from or have an they which one you "
    "were all we when there can more if no out so what up its about into them than only other time new some "
    "could these two may first then do any like my now over such our man me even most made after also did many "
    "before must through back years where much your way well down should because each just those people how too "
    "little state good very make world still own see men work long get here between both life being under never "
    "day same another know while last might us great old year off come since against go came right used take "
    "three model token search tree branch score reward value step answer question think compute cache prefix "
    "sample beam greedy plugin engine layer hidden state vector steer request batch prompt chat assistant user "
    "system hello world python number list string return function class import result error test data"
).split()
_SYLLABLES = (
    "ka lo mi nu re sa ti vo ze bar cor den fil gan hol jen kir lum mor nix pel quo rus sol tam ul ven wix yor zen"
).split()
_CODE = (
    "def {f}({a}, {b}):\n    return {a} + {b}\n",
    "for {a} in range({n}):\n    print({a} * {n})\n",
    "class {F}:\n    def __init__(self, {a}):\n        self.{a} = {a}\n",
    "if {a} > {n}:\n    {b} = [{a}, {n}]\nelse:\n    {b} = None\n",
    "import {f}\nresult = {f}.{a}({n}, key={b!r})\n",
)


def _corpus(lines: int = 6000, seed: int = 1234) -> list[str]:
    """A deterministic mixed corpus: Zipf-ish prose, pseudo-words, arithmetic, Python, chat turns."""
    rng = random.Random(seed)
    weights = [1.0 / (i + 1) for i in range(len(_WORDS))]
    pseudo = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(600)]
    out: list[str] = []
    for i in range(lines):
        kind = i % 5
        if kind == 0:
            words = rng.choices(_WORDS, weights, k=rng.randint(6, 18))
            out.append(" ".join(words).capitalize() + rng.choice(".!?,;:"))
        elif kind == 1:
            n = rng.randint(4, 12)
            words = [rng.choice(pseudo) if rng.random() < 0.5 else rng.choice(_WORDS) for _ in range(n)]
            out.append(" ".join(words) + ".")
        elif kind == 2:
            a, b = rng.randint(0, 999), rng.randint(0, 999)
            op = rng.choice("+-*")
            val = {"+": a + b, "-": a - b, "*": a * b}[op]
            out.append(f"What is {a}{op}{b}? {a} {op} {b} = {val}")
        elif kind == 3:
            names = [rng.choice(pseudo) for _ in range(3)]
            out.append(
                rng.choice(_CODE).format(
                    f=names[0], F=names[0].capitalize(), a=names[1], b=names[2], n=rng.randint(1, 64)
                )
            )
        else:
            q = " ".join(rng.choices(_WORDS, weights, k=rng.randint(3, 9)))
            out.append(f"<|im_start|>user\n{q}?<|im_end|>\n<|im_start|>assistant\n{q.upper()}<|im_end|>")
    return out


@functools.lru_cache(maxsize=8)
def _tokenizer_json(vocab: int) -> str:
    """Train the byte-level BPE once per vocab size (per process); returns ``tokenizer.json`` text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok.to_str(pretty=False)


def tiny_tokenizer(vocab: int = 2048, *, extra_special: tuple[str, ...] = (), model_max_length: int = 2048):
    """The tiny byte-level BPE tokenizer as a ``PreTrainedTokenizerFast`` (trained offline, deterministic)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(_tokenizer_json(vocab))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    if extra_special:
        tok.add_special_tokens({"additional_special_tokens": list(extra_special)})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _save_tokenizer(tok: Any, out: Path) -> None:
    tok.save_pretrained(str(out))
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    for key in ("is_local", "local_files_only", "name_or_path"):
        cfg.pop(key, None)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _entry(kind: str, params: dict[str, Any]) -> Path:
    tag = "-".join(f"{k}{v}" for k, v in params.items())
    return cache_root() / "tiny" / f"{kind}-r{RECIPE}-{tag}"


def _build(target: Path, builder: Any, force: bool) -> Path:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return build_once(target, builder, force=force).path


def _llama_config(*, hidden, layers, heads, kv_heads, vocab, intermediate, max_position, tie, dtype):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_position,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        tie_word_embeddings=tie,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        dtype=dtype,
        architectures=["LlamaForCausalLM"],
    )


def _random_llama(config: Any, seed: int, dtype: str) -> Any:
    """A ``LlamaForCausalLM`` whose weights come from one seeded generator, in name order.

    Independent of transformers' init code: linear/embedding weights ~ N(0, 0.02), norms = 1, and
    the output head scaled so next-token logits have a std of ~2 (distinct greedy choices, which
    keeps greedy parity between engines stable).
    """
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)  # transformers' own init runs first; every parameter is overwritten below
    model = LlamaForCausalLM(config).to(torch.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            elif name == "lm_head.weight":
                param.normal_(0.0, 2.0 / config.hidden_size**0.5, generator=gen)
            else:
                param.normal_(0.0, 0.02, generator=gen)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    return model.to(getattr(torch, dtype))


#: the default tiny Llama's hidden size and vocabulary (the engine suites' model)
TINY_HIDDEN = 128
TINY_VOCAB = 2048


def build_tiny_llama(
    path: str | Path | None = None,
    *,
    hidden: int = TINY_HIDDEN,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    vocab: int = TINY_VOCAB,
    seed: int = 0,
    dtype: str = "float32",
    intermediate: int | None = None,
    max_position: int = 2048,
    tie_word_embeddings: bool = False,
    force: bool = False,
) -> Path:
    """Build (once) a random tiny Llama checkpoint with its tokenizer and return its directory.

    The directory holds config.json, generation_config.json, model.safetensors, tokenizer.json,
    tokenizer_config.json (+ chat template) and a ttc manifest. ``path`` defaults to a cache entry
    keyed by every parameter. For vLLM on CPU keep ``hidden // heads`` >= 32 (its CPU attention
    rejects head_dim 16); the defaults give 32 and match HF greedy output token for token.
    """
    intermediate = intermediate or 2 * hidden
    params = dict(h=hidden, l=layers, a=heads, kv=kv_heads, v=vocab, s=seed, i=intermediate,
                  p=max_position, t=int(tie_word_embeddings), d=dtype)
    target = Path(path) if path is not None else _entry("llama", params)

    def builder(tmp: Path) -> dict[str, Any]:
        from transformers import GenerationConfig

        tok = tiny_tokenizer(vocab, model_max_length=max_position)
        if len(tok) > vocab:
            raise ValueError(f"tokenizer has {len(tok)} tokens, more than vocab={vocab}")
        config = _llama_config(hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab,
                               intermediate=intermediate, max_position=max_position, tie=tie_word_embeddings,
                               dtype=dtype)
        model = _random_llama(config, seed, dtype)
        model.generation_config = GenerationConfig(bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID)
        with quiet_transformers():
            model.save_pretrained(str(tmp))
        _save_tokenizer(tok, tmp)
        return {"name": "tiny-llama", "recipe": RECIPE, "params": params}

    return _build(target, builder, force)


def build_tiny_qwen2_prm(
    path: str | Path | None = None,
    *,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    vocab: int = 2048,
    max_position: int = 2048,
    step_tag: str = PRM_STEP_TAG,
    dtype: str = "float32",
    weights: bool = False,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """A tiny ``Qwen2ForProcessRewardModel``: config.json + tokenizer, and with ``weights`` random
    seeded weights too (``model.safetensors``: a Qwen2 body plus the ``score`` head
    Linear(h, h) -> ReLU -> Linear(h, 2), the layout of vLLM's ``qwen2_rm.py``).

    Without weights it is for engines' dummy-weight loading (vLLM ``load_format="dummy"``); with
    them an HF forward of the same file is a reference for what an engine serves. The tokenizer
    adds ``step_tag`` as a special token (its id is recorded in config.json as ``step_tag_id`` and
    in the manifest); ``vocab_size`` is the tokenizer length rounded up to a multiple of 64.
    """
    params = dict(h=hidden, l=layers, a=heads, kv=kv_heads, v=vocab, p=max_position, d=dtype,
                  st=step_tag.strip("<>|").replace("/", "_"))
    if weights:
        params["w"] = seed
    target = Path(path) if path is not None else _entry("qwen2prm", params)

    def builder(tmp: Path) -> dict[str, Any]:
        tok = tiny_tokenizer(vocab, extra_special=(step_tag,), model_max_length=max_position)
        step_id = tok.convert_tokens_to_ids(step_tag)
        vocab_size = -(-len(tok) // 64) * 64
        config = {
            "architectures": ["Qwen2ForProcessRewardModel"],
            "model_type": "qwen2",
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "hidden_act": "silu",
            "max_position_embeddings": max_position,
            "max_window_layers": layers,
            "use_sliding_window": False,
            "sliding_window": None,
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "tie_word_embeddings": False,
            "use_cache": True,
            "vocab_size": vocab_size,
            "bos_token_id": BOS_ID,
            "eos_token_id": EOS_ID,
            "pad_token_id": PAD_ID,
            "num_labels": 2,
            "step_tag_id": step_id,
            "torch_dtype": dtype,
            "dtype": dtype,
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if weights:
            _write_prm_weights(config, seed, tmp / "model.safetensors")
        _save_tokenizer(tok, tmp)
        return {"name": "tiny-qwen2-prm", "recipe": RECIPE, "params": params, "step_tag": step_tag,
                "step_tag_id": step_id}

    return _build(target, builder, force)


def _write_prm_weights(config: dict[str, Any], seed: int, out: Path) -> None:
    """Seeded random weights for the PRM of :func:`build_tiny_qwen2_prm`, in parameter-name order:
    linear/embedding ~ N(0, 0.02), biases ~ N(0, 0.02), norms = 1; the head's last layer is wider
    (std 8/sqrt(h)) so step probabilities spread over (0, 1) instead of all sitting at 0.5."""
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2Config, Qwen2Model

    body = Qwen2Model(Qwen2Config(**{k: v for k, v in config.items() if k not in ("architectures", "step_tag_id")}))
    h = config["hidden_size"]
    shapes = {f"model.{k}": tuple(v.shape) for k, v in body.state_dict().items()}
    shapes.update({"score.0.weight": (h, h), "score.0.bias": (h,), "score.2.weight": (2, h), "score.2.bias": (2,)})
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name in sorted(shapes):
        t = torch.empty(shapes[name], dtype=torch.float32)
        if name.endswith("norm.weight"):
            t.fill_(1.0)
        elif name.startswith("score.2"):
            t.normal_(0.0, 8.0 / h**0.5, generator=gen)
        else:
            t.normal_(0.0, 0.02, generator=gen)
        tensors[name] = t.to(getattr(torch, config["dtype"])).contiguous()
    save_file(tensors, str(out), metadata={"format": "pt"})


def _gguf_permute(w: Any, n_head: int) -> Any:
    """llama.cpp's q/k row order (what convert_hf_to_gguf.py writes; transformers undoes it)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def build_tiny_llama_gguf(
    path: str | Path | None = None,
    *,
    quant: str = "F32",
    force: bool = False,
    **llama_kwargs: Any,
) -> Path:
    """Write the tiny Llama of :func:`build_tiny_llama` (same kwargs) as a GGUF file; return its path.

    Laid out like llama.cpp's converter: ``tokenizer.ggml.*`` (gpt2 BPE, tokens, merges, types,
    special ids, chat template) and ``blk.N.*`` tensors with q/k permuted. 2-D weights are stored as
    ``quant`` (F32, F16, Q8_0, Q4_0 or Q4_1), norms as F32. ``path`` is the output file; by default
    ``model.gguf`` in a cache entry.
    """
    import numpy as np

    hf_dir = build_tiny_llama(**llama_kwargs)
    quant = quant.upper()
    if path is not None:
        out = Path(path)
        if out.is_file() and not force:
            return out
    else:
        entry = Path(str(hf_dir) + f"-gguf{quant}")
        return _build(entry, lambda tmp: _write_gguf(hf_dir, tmp / "model.gguf", quant, np), force) / "model.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        _write_gguf(hf_dir, tmp, quant, np)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _write_gguf(hf_dir: Path, out: Path, quant: str, np: Any) -> dict[str, Any]:
    import gguf
    from safetensors.numpy import load_file

    cfg = json.loads((hf_dir / "config.json").read_text())
    tok = json.loads((hf_dir / "tokenizer.json").read_text())
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg["hidden_size"] // n_head
    qtype = gguf.GGMLQuantizationType[quant]

    vocab: dict[str, int] = dict(tok["model"]["vocab"])
    for added in tok.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
    size = cfg["vocab_size"]
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    special_ids = {a["id"] for a in tok.get("added_tokens", []) if a.get("special")}
    for t, i in vocab.items():
        tokens[i] = t
        types[i] = gguf.TokenType.CONTROL if i in special_ids else gguf.TokenType.NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]

    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(float(cfg.get("rope_theta") or cfg.get("rope_parameters", {}).get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(size)
    w.add_rope_dimension_count(head_dim)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(BOS_ID)
    w.add_eos_token_id(EOS_ID)
    w.add_unk_token_id(UNK_ID)
    w.add_pad_token_id(PAD_ID)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    tensors = load_file(str(hf_dir / "model.safetensors"))
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
        "input_layernorm.weight": "attn_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
    }
    for i in range(cfg["num_hidden_layers"]):
        for hf, gg in per_layer.items():
            names[f"model.layers.{i}.{hf}"] = f"blk.{i}.{gg}"
    for hf_name in sorted(tensors):
        if hf_name not in names:
            raise ValueError(f"unexpected tensor {hf_name}")
        data = tensors[hf_name].astype(np.float32)
        if hf_name.endswith("q_proj.weight"):
            data = _gguf_permute(data, n_head)
        elif hf_name.endswith("k_proj.weight"):
            data = _gguf_permute(data, n_kv)
        if data.ndim == 2 and qtype not in (gguf.GGMLQuantizationType.F32,):
            if qtype == gguf.GGMLQuantizationType.F16:
                w.add_tensor(names[hf_name], data.astype(np.float16))
            else:
                w.add_tensor(names[hf_name], gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(names[hf_name], np.ascontiguousarray(data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"name": "tiny-llama-gguf", "recipe": RECIPE, "quant": quant, "source": str(hf_dir)}


def prm_step_tag_id(path: str | Path) -> int:
    """The step tag's token id of a model built by :func:`build_tiny_qwen2_prm`."""
    return int(json.loads((Path(path) / "config.json").read_text())["step_tag_id"])


def tiny_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a directory built by this module."""
    return read_manifest(Path(path))
