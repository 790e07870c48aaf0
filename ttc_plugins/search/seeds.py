"""The per-continuation sampling seed every backend derives the same way.

:class:`~.engine.SamplingConfig` promises that a continuation is a pure function of (search seed,
branch, sample index), whatever else shares the batch. Every EngineOps (the in-process
:class:`~.hf_ops.HFEngineOps`, vLLM's and SGLang's ``search_ops``, :class:`~.openai_ops.OpenAIEngineOps`)
seeds continuation ``i`` with :func:`continuation_seed`, so one search run on two backends asks
both for the same seeds. Changing the derivation changes every seeded result on every backend.
"""

from __future__ import annotations

import hashlib

__all__ = ["continuation_seed"]


def continuation_seed(seed: int, branch_id: str, index: int) -> int:
    """The generator seed of continuation ``index`` of ``branch_id`` (the request's
    ``sampling_key``) in a search seeded with ``seed``: 63 bits, so it fits any engine's int64."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{branch_id}/{index}".encode()).digest()[:8], "little") & (2**63 - 1)
