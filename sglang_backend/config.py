"""Engine-wide settings of the SGLang backend: the ``TTC_SGLANG_CONFIG`` environment variable.

SGLang has no free-form "additional config" server argument, so the backend reads one
environment variable, in every SGLang process (main, scheduler, detokenizer inherit it)::

    TTC_SGLANG_CONFIG='{"vectors": {"honest": "/srv/vectors/honest.npy"}}' \\
        python -m sglang.launch_server --model-path ... --device cpu

The value is a JSON object, or ``@/path/to/config.json``. Keys:

``vectors``
    named steering vectors (name -> .json/.npy/.safetensors file) requests may name;
``controls``
    install the per-token residual-stream control on the decoder layers (default true);
``ttc_layers``
    TTC adapters this server hosts: decoder-layer index -> adapter file (``ttc adapter train``'s
    safetensors; the same file vLLM serves). Requests switch one on per request with the
    ``ttc_layer`` control (its horizon and scale); a file that does not fit the model stops the
    engine at start;
``allow_custom_logit_processor``
    default false: the backend refuses every request that carries a ``custom_logit_processor``
    (SGLang unpickles those bytes in the scheduler: remote code execution), even when the server
    was started with ``--enable-custom-logit-processor``. Set true only on a trusted endpoint;
``max_beam_width``
    the widest ``ttc.beam`` a request may ask for (default 16; each beam is one row of SGLang's
    request pool, so ``--max-running-requests`` bounds it too);
``reward_models``
    process reward models for the ``prm`` scorer, by name: ``{"prm": {"url": "http://host:port",
    "model": "/path/prm"}}`` (a second SGLang server started with ``--is-embedding``).

Unknown keys and bad values stop the engine at start with a message naming the key.
Engine-free: imports neither sglang nor torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field

from ttc_plugins.engine_config import EngineConfigBase, TTCConfigError, validate_engine_config

ENV = "TTC_SGLANG_CONFIG"


class RewardModelServer(BaseModel):
    """A process reward model served by another SGLang server (``--is-embedding``), for searches
    with ``"scorer": "prm", "scorer_args": {"model": name}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Base URL of the PRM's SGLang server (its native ``/encode`` endpoint is used).
    url: str = Field(pattern=r"^https?://")
    #: The PRM's model directory (its tokenizer and ``step_tag_id``).
    model: str = Field(min_length=1)


class EngineConfig(EngineConfigBase):
    """Validated ``TTC_SGLANG_CONFIG`` (``vectors``, ``controls`` and ``ttc_layers`` come from the base)."""

    allow_custom_logit_processor: bool = False
    max_beam_width: int = Field(16, ge=1, le=1024)
    reward_models: dict[str, RewardModelServer] = Field(default_factory=dict)


def parse_engine_config(raw: str | Mapping[str, Any] | None) -> EngineConfig:
    """Parse the variable's value (``None`` or empty: defaults).

    :raises TTCConfigError: naming the key, e.g. ``TTC_SGLANG_CONFIG.vectorz``.
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return EngineConfig()
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("@"):
            path = Path(text[1:]).expanduser()
            if not path.is_file():
                raise TTCConfigError(ENV, f"config file {path} does not exist")
            text = path.read_text()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TTCConfigError(ENV, f"not valid JSON ({exc.msg} at char {exc.pos})") from None
    cfg = validate_engine_config(EngineConfig, raw, ENV)
    cfg.check_vectors(ENV)
    cfg.check_ttc_layers(ENV)
    return cfg


def load_engine_config(environ: Mapping[str, str] | None = None) -> EngineConfig:
    env = os.environ if environ is None else environ
    return parse_engine_config(env.get(ENV))
