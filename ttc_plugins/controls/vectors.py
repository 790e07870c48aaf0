"""Named steering vectors: loaded from safe files (JSON, .npy without pickles, safetensors).

Engine-wide configuration maps names to files (vLLM ``--additional-config '{"ttc": {"vectors":
{"honest": "/path/honest.npy"}}}'``); a request then says ``"vector": "honest"``. Files are read
once per process; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence


@lru_cache(maxsize=64)
def _load_file(path: str) -> tuple[float, ...]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"steering vector file {path} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".json":
        data = json.loads(p.read_text())
    elif suffix == ".npy":
        import numpy as np

        data = np.load(p, allow_pickle=False).astype("float64").reshape(-1).tolist()
    elif suffix == ".safetensors":
        from safetensors.numpy import load_file

        tensors = load_file(str(p))
        if len(tensors) != 1:
            raise ValueError(f"{path}: expected exactly one tensor, found {sorted(tensors)}")
        data = next(iter(tensors.values())).astype("float64").reshape(-1).tolist()
    else:
        raise ValueError(f"{path}: unsupported vector file type {suffix!r} (use .json, .npy or .safetensors)")
    return check_vector(data, what=path)


def check_vector(data: object, what: str = "vector") -> tuple[float, ...]:
    if not isinstance(data, Sequence) or isinstance(data, (str, bytes)) or not data:
        raise ValueError(f"{what} must be a non-empty list of numbers")
    out = tuple(float(x) for x in data)
    if not all(math.isfinite(x) for x in out):
        raise ValueError(f"{what} contains NaN or infinity")
    return out


class VectorLibrary:
    """Named vectors available to requests on this server."""

    def __init__(self, files: Mapping[str, str] | None = None):
        self.files = dict(files or {})

    def get(self, name: str) -> tuple[float, ...]:
        if name not in self.files:
            known = ", ".join(sorted(self.files)) or "none configured"
            raise KeyError(f"unknown named vector {name!r}; available: {known}")
        return _load_file(self.files[name])

    def names(self) -> list[str]:
        return sorted(self.files)
