"""Models ttc-plugins ships: the embedded default model and the on-disk cache it lives in."""

from .cache import ENV_CACHE_DIR, ModelCacheError, ModelError, cache_root
from .convert import GGUFModelSpec, ModelState, convert_gguf_to_hf, prepare_gguf_model
from .default import (
    DEFAULT_MODEL,
    default_model_dir,
    default_model_path,
    default_model_state,
    prepare_default_model,
    verify_default_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "ENV_CACHE_DIR",
    "GGUFModelSpec",
    "ModelCacheError",
    "ModelError",
    "ModelState",
    "cache_root",
    "convert_gguf_to_hf",
    "default_model_dir",
    "default_model_path",
    "default_model_state",
    "prepare_default_model",
    "prepare_gguf_model",
    "verify_default_model",
]
