"""A TTC adapter's shape and how to read it from an adapter file without loading torch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

META_KEY = "ttc_adapter_config"


@dataclass(frozen=True)
class TTCAdapterConfig:
    hidden_size: int
    heads: int = 8
    state_dim: int = 16
    control_dim: int = 16
    b_rank: int = 16
    q_rank: int = 16

    @property
    def per_head(self) -> int:
        # h0, a, log_gamma_q (D each); r_inv, log_gamma_b (DU each); Qf mixture (q_rank); log_gamma_a (1)
        return 3 * self.state_dim + 2 * self.control_dim + self.q_rank + 1

    @property
    def in_features(self) -> int:
        return self.heads * self.per_head + self.b_rank + self.q_rank


def read_adapter_config(path: str | Path) -> TTCAdapterConfig:
    """The config stored in an adapter file's safetensors metadata.

    :raises ValueError: the file is missing, not safetensors, or not a TTC adapter.
    """
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"TTC adapter file {p} does not exist")
    try:
        with safe_open(str(p), framework="numpy") as f:
            meta = (f.metadata() or {}).get(META_KEY)
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{p} is not a readable safetensors file: {exc}") from None
    if meta is None:
        raise ValueError(f"{p} is not a TTC adapter file (no {META_KEY!r} metadata)")
    return TTCAdapterConfig(**json.loads(meta))
