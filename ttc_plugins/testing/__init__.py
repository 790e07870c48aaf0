"""Test helpers: tiny random models built on the fly (no hub, seconds)."""

from .tiny_model import (
    BOS,
    CHAT_TEMPLATE,
    EOS,
    PAD,
    PRM_STEP_TAG,
    build_tiny_llama,
    build_tiny_llama_gguf,
    build_tiny_qwen2_prm,
    prm_step_tag_id,
    tiny_tokenizer,
)

__all__ = [
    "BOS",
    "CHAT_TEMPLATE",
    "EOS",
    "PAD",
    "PRM_STEP_TAG",
    "build_tiny_llama",
    "build_tiny_llama_gguf",
    "build_tiny_qwen2_prm",
    "prm_step_tag_id",
    "tiny_tokenizer",
]
