"""The tiny random Llama the integration suites run on (built offline in seconds, cached).

Uses ``ttc_plugins.testing.tiny_model.build_tiny_llama`` when the package provides it; otherwise
builds the same kind of model here: byte-level BPE (vocab 2048) trained on stdlib sources and a
random ``LlamaForCausalLM`` (hidden 128, 4 layers, 4 heads / 2 KV heads) saved as safetensors.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_DIR = Path(os.environ.get("TTC_TINY_MODEL_DIR", Path.home() / ".cache" / "ttc-plugins" / "tiny-llama-it"))


def _build_here(path: Path, *, hidden=128, layers=4, heads=4, kv_heads=2, vocab=2048, seed=0) -> Path:
    import glob

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    marker = path / "config.json"
    if marker.exists() and (path / "tokenizer.json").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))[:80]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train(files, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(path)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=2048,
        bos_token_id=0, eos_token_id=1, tie_word_embeddings=False, torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights than the default init: less flat, more decisive logits
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.08)
    model.save_pretrained(path, safe_serialization=True)
    return path


def tiny_model_dir(path: Path | None = None) -> Path:
    try:
        from ttc_plugins.testing.tiny_model import build_tiny_llama  # type: ignore[import-not-found]
    except ImportError:
        return _build_here(Path(path or DEFAULT_DIR))
    return Path(build_tiny_llama(path))


if __name__ == "__main__":
    print(tiny_model_dir(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
