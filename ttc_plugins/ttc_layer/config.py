"""A TTC adapter file's shape and metadata, read without loading torch.

Two layouts of one format (safetensors, the description as JSON metadata; never pickles):

- format 1 (files written before 2026-12): one adapter, tensors at the top level, only
  ``ttc_adapter_config`` in the metadata; it fits whichever decoder layer the engine puts it at;
- format 2 (``ttc adapter train``): adapters for several decoder layers (tensors under
  ``layers.<i>.``), with the base model they were trained on, their layers and the horizon range
  they were trained at (``ttc_adapter_format`` = "2").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

META_KEY = "ttc_adapter_config"
FORMAT_KEY = "ttc_adapter_format"
INFO_KEY = "ttc_adapter_info"  # format 2: {"base_model": {...}, "layers": [...], "horizon": [lo, hi]}
FORMAT = 2


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


@dataclass(frozen=True)
class AdapterFile:
    """What an adapter file says about itself. ``layers`` is None for a format-1 file (one adapter,
    any layer); ``base_model`` and ``horizon`` are None where the file does not record them."""

    path: Path
    format: int
    config: TTCAdapterConfig
    layers: tuple[int, ...] | None = None
    base_model: dict[str, Any] | None = None
    horizon: tuple[int, int] | None = None

    def prefix(self, layer: int | None) -> str:
        """The tensor-name prefix of the adapter for ``layer`` ("" in a format-1 file).

        :raises ValueError: the file holds no adapter for that layer (naming the ones it has).
        """
        if self.layers is None:
            return ""
        if layer is None and len(self.layers) == 1:
            layer = self.layers[0]
        if layer not in self.layers:
            raise ValueError(f"{self.path} holds TTC adapters for decoder layers {list(self.layers)}, not {layer}")
        return f"layers.{layer}."


def read_adapter_file(path: str | Path) -> AdapterFile:
    """The metadata of an adapter file.

    :raises ValueError: the file is missing, not safetensors, not a TTC adapter, or written in a
        newer format than this version reads.
    """
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"TTC adapter file {p} does not exist")
    try:
        with safe_open(str(p), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{p} is not a readable safetensors file: {exc}") from None
    if META_KEY not in meta:
        raise ValueError(f"{p} is not a TTC adapter file (no {META_KEY!r} metadata)")
    try:
        fmt = int(meta.get(FORMAT_KEY, "1"))
        config = TTCAdapterConfig(**json.loads(meta[META_KEY]))
        info = json.loads(meta.get(INFO_KEY, "{}"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{p}: unreadable TTC adapter metadata ({exc})") from None
    if fmt not in (1, FORMAT):
        raise ValueError(f"{p} is a format-{fmt} TTC adapter file; this ttc-plugins reads formats 1 and {FORMAT} "
                         "(upgrade ttc-plugins)")
    if fmt == 1:
        return AdapterFile(p, 1, config)
    horizon = info.get("horizon")
    return AdapterFile(p, fmt, config, layers=tuple(int(i) for i in info.get("layers", ())),
                       base_model=info.get("base_model"), horizon=tuple(horizon) if horizon else None)


def base_model_mismatch(info: AdapterFile, **model: Any) -> str | None:
    """Why the file's adapters do not fit a model described by ``model`` (``hidden_size``,
    ``num_hidden_layers``, ``vocab_size``, ``model_type``; unknown ones skipped), else None. The
    hidden size must match; the rest is compared with the base model the file records."""
    hidden = model.get("hidden_size")
    if hidden is not None and info.config.hidden_size != hidden:
        return f"adapter hidden size {info.config.hidden_size} != the model's {hidden}"
    base = info.base_model or {}
    for key in ("model_type", "num_hidden_layers", "vocab_size"):
        want, have = base.get(key), model.get(key)
        if want is not None and have is not None and want != have:
            return f"trained on {base.get('name')!r} ({key} {want}); this model has {key} {have}"
    return None


def read_adapter_config(path: str | Path) -> TTCAdapterConfig:
    """The adapter shape stored in a file's metadata (see :func:`read_adapter_file`)."""
    return read_adapter_file(path).config
