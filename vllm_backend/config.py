"""Engine-wide settings: the ``ttc`` section of vLLM's ``additional_config``.

    --additional-config '{"ttc": {"vectors": {"honest": "/srv/vectors/honest.npy"}}}'
    LLM(..., additional_config={"ttc": {}})

The presence of the ``ttc`` key switches the hidden-state hook point on (the decoder layers of the
model get the per-token control op); without it the plugin only relays decoding hooks. Unknown keys
and bad values stop the engine at start, with a message naming the key.

Engine-free: this module imports neither vllm nor torch, so it is unit-tested in the core env.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field

from ttc_plugins.engine_config import EngineConfigBase, TTCConfigError, validate_engine_config

ROOT = "additional_config.ttc"


class RewardModelConfig(BaseModel):
    """A process reward model the OpenAI server runs beside the policy engine (a second vLLM
    engine, pooling runner), for searches with ``"scorer": "prm", "scorer_args": {"model": name}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Model directory (a PRM architecture such as ``Qwen2ForProcessRewardModel``).
    model: str = Field(min_length=1)
    #: The step tag's token id; default: the model's config.json ``step_tag_id``, else vLLM's.
    step_tag_id: int | None = Field(default=None, ge=0)
    dtype: str = "auto"
    max_model_len: int = Field(default=2048, ge=16)
    kv_cache_memory_bytes: int = Field(default=256 * 2**20, ge=2**20)


class EngineConfig(EngineConfigBase):
    """Validated ``additional_config["ttc"]`` (``vectors``, ``controls`` and ``ttc_layers`` come from the base)."""

    #: Distinct control plans cached per worker (a plan is the tensors of one set of specs).
    plan_cache_size: int = Field(default=64, ge=1, le=4096)
    #: widest ``ttc.beam`` a request may ask for (each beam is one engine request slot)
    max_beam_width: int = Field(default=16, ge=1, le=256)
    #: Process reward models by name, started in the API server on the first search request.
    reward_models: dict[str, RewardModelConfig] = Field(default_factory=dict)


def parse_engine_config(additional_config: Mapping[str, Any] | None, *, hidden_size: int | None = None) -> EngineConfig | None:
    """Validate the ``ttc`` section; ``None`` when the engine was not started with one.

    :param hidden_size: when known, every named vector is loaded and its length checked now, so a
        bad file stops the engine at start instead of failing the first request that names it.
    :raises TTCConfigError: naming the key, e.g. ``additional_config.ttc.vectorz``.
    """
    if not additional_config or "ttc" not in additional_config:
        return None
    raw = additional_config["ttc"]
    if raw is None:
        raw = {}
    cfg = validate_engine_config(EngineConfig, raw, ROOT)
    cfg.check_vectors(ROOT, hidden_size)
    cfg.check_ttc_layers(ROOT, hidden_size)
    for name, rm in cfg.reward_models.items():
        if not (Path(rm.model) / "config.json").is_file():
            raise TTCConfigError(f"{ROOT}.reward_models.{name}.model", f"no model directory (config.json) at {rm.model!r}")
    return cfg
