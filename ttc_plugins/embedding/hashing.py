"""The ``hashing`` embedder: character n-grams hashed into buckets. No model, deterministic, and
only near-identical texts come out close; the engines' default ``embed``."""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

from .. import hookimpl
from .base import Embedder


class HashingEmbedder(Embedder):
    """Character n-gram hashing into ``dim`` buckets, L2-normalised: cheap and deterministic
    (texts sharing many n-grams get high cosine similarity)."""

    name = "hashing"
    # distinct arithmetic steps land 0.4-0.9 apart: only near-copies fall within 0.3
    cluster_distance = 0.3

    def __init__(self, dim: int = 256, n: int = 3):
        self.dim, self.n = dim, n

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        out = []
        for text in texts:
            v = [0.0] * self.dim
            t = f" {' '.join(text.lower().split())} "
            for i in range(max(1, len(t) - self.n + 1)):
                h = int.from_bytes(hashlib.blake2b(t[i : i + self.n].encode(), digest_size=4).digest(), "little")
                v[h % self.dim] += 1.0
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / norm for x in v])
        return out


@hookimpl
def ttc_register_embedders(register) -> None:
    register(HashingEmbedder)
