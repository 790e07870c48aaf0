"""Tiny random models: deterministic, cached, loadable, and they generate."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from ttc_plugins.model.cache import MANIFEST_NAME, verify_entry
from ttc_plugins.testing import (
    BOS,
    EOS,
    PAD,
    PRM_STEP_TAG,
    build_tiny_llama,
    build_tiny_qwen2_prm,
    prm_step_tag_id,
    tiny_tokenizer,
)

SMALL = dict(hidden=64, layers=2, heads=4, kv_heads=2, vocab=1024)


def _bytes(path: Path, name: str) -> bytes:
    return (path / name).read_bytes()


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path):
    a = build_tiny_llama(tmp_path / "a", seed=7, **SMALL)
    b = build_tiny_llama(tmp_path / "b", seed=7, **SMALL)
    c = build_tiny_llama(tmp_path / "c", seed=8, **SMALL)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "tokenizer_config.json"):
        assert _bytes(a, name) == _bytes(b, name), name
    assert _bytes(a, "tokenizer.json") == _bytes(c, "tokenizer.json")  # the tokenizer ignores the seed
    assert _bytes(a, "model.safetensors") != _bytes(c, "model.safetensors")
    verify_entry(a, deep=True)


def test_default_build_is_cached_by_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("TTC_CACHE_DIR", str(tmp_path))
    p = build_tiny_llama(**SMALL)
    assert p.parent == tmp_path / "tiny" and "h64" in p.name and "v1024" in p.name
    stamp = (p / MANIFEST_NAME).stat().st_mtime_ns
    assert build_tiny_llama(**SMALL) == p
    assert (p / MANIFEST_NAME).stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert build_tiny_llama(**{**SMALL, "seed": 1}) != p
    assert [x.name for x in tmp_path.joinpath("tiny").iterdir() if ".tmp-" in x.name] == []


def test_concurrent_builders_share_one_build(tmp_path):
    target = tmp_path / "shared"
    results: list[Path] = []
    errors: list[BaseException] = []

    def build():
        try:
            results.append(build_tiny_llama(target, **SMALL))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [target, target]
    verify_entry(target, deep=True)


def test_tokenizer_specials_roundtrip_and_chat_template():
    tok = tiny_tokenizer(1024)
    assert len(tok) == 1024
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (BOS, EOS, PAD)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 3)
    for text in ["What is 2+3?", "def f(x):\n    return x * 2\n", "naïve café ☕ 中文"]:
        assert tok.decode(tok(text)["input_ids"]) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.convert_tokens_to_ids(EOS) in tok(chat)["input_ids"]


def test_loads_in_transformers_and_generates(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_llama(tmp_path / "m", **SMALL)
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (1, 2, 3)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.dtype == torch.float32 and model.config.vocab_size == 1024
    enc = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out1 = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    out2 = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out1.shape[1] > enc["input_ids"].shape[1]
    assert torch.equal(out1, out2)
    assert tok.decode(out1[0][enc["input_ids"].shape[1]:], skip_special_tokens=True)


def test_bf16_and_tied_variants(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    path = build_tiny_llama(tmp_path / "bf16", dtype="bfloat16", tie_word_embeddings=True, **SMALL)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.dtype == torch.bfloat16
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def test_qwen2_prm_is_config_and_tokenizer_only(tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    path = build_tiny_qwen2_prm(tmp_path / "prm", hidden=64, heads=2, kv_heads=1, layers=2, vocab=1024)
    assert not list(path.glob("*.safetensors"))
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForProcessRewardModel"]
    assert config["model_type"] == "qwen2"
    tok = AutoTokenizer.from_pretrained(path)
    step_id = tok.convert_tokens_to_ids(PRM_STEP_TAG)
    assert config["step_tag_id"] == step_id == prm_step_tag_id(path) and step_id >= 1024
    assert config["vocab_size"] >= len(tok) and config["vocab_size"] % 64 == 0
    ids = tok(f"Step 1: 2+3=5 {PRM_STEP_TAG} Step 2: done {PRM_STEP_TAG}")["input_ids"]
    assert ids.count(step_id) == 2
    cfg = AutoConfig.from_pretrained(path)
    assert cfg.hidden_size == 64 and cfg.num_hidden_layers == 2
    manifest = verify_entry(path)
    assert manifest["step_tag_id"] == step_id


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    """A tokenizer larger than the model vocab would index past the embedding: refused, nothing left."""
    from ttc_plugins.testing import tiny_model

    real = tiny_model.tiny_tokenizer

    def bigger(vocab: int, **kw):
        tok = real(vocab, **kw)
        tok.add_tokens(["<extra_a>", "<extra_b>"])
        return tok

    monkeypatch.setattr(tiny_model, "tiny_tokenizer", bigger)
    with pytest.raises(ValueError, match="more than vocab"):
        build_tiny_llama(tmp_path / "x", **SMALL)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
