"""What a search needs from an engine: the :class:`EngineOps` protocol.

Strategies never hold engine objects; the driver hands every engine call to an ``EngineOps``.
Backends (vLLM, SGLang, the in-process HF engine :mod:`ttc_plugins.search.hf_ops`) implement it.

All calls are *batched*: ``extend`` receives the live branches of every concurrent search in
one list, so an engine schedules them together and shares their prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

from ..types import Branch, KVStats, RequestContext, Step

__all__ = [
    "EngineOps",
    "ExtendRequest",
    "SamplingConfig",
    "StepStop",
    "VerifyRequest",
]


@dataclass(frozen=True)
class StepStop:
    """When a step ends: at the first ``delimiter`` (kept in the step's text), at a ``stop``
    string (the branch is finished, reason ``"stop"``), at EOS (``"eos"``) or after
    ``max_tokens`` new tokens (``"length"``)."""

    delimiter: str = "\n\n"
    max_tokens: int = 64
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"StepStop.max_tokens must be >= 1, got {self.max_tokens}")


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick tokens. ``temperature == 0`` is greedy. ``seed`` makes a continuation a pure
    function of (seed, branch id, sample index): engines derive a per-continuation generator
    from them, so results never depend on batch composition or order."""

    temperature: float = 0.8
    top_p: float = 1.0
    seed: int = 0


@dataclass
class ExtendRequest:
    """Continue ``branch`` by one step, ``n`` times independently (n continuations that share
    the branch's prefix KV). Engines seed continuation ``i`` from ``(sampling.seed,
    sampling_key, i)``, so a search's results do not depend on what else shares the batch."""

    ctx: RequestContext
    branch: Branch
    until: StepStop = field(default_factory=StepStop)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    n: int = 1
    seed_key: str = ""

    @property
    def sampling_key(self) -> str:
        """What seeds this request's continuations together with ``sampling.seed``: the search's
        stable name for the branch (its position in the search tree), else the branch id."""
        return self.seed_key or self.branch.id


@dataclass(frozen=True)
class VerifyRequest:
    """Ask the model a yes/no question: the probability that the next token after ``prompt``
    is ``yes`` rather than ``no`` (``P(yes) / (P(yes) + P(no))``; with ``no=None``, the raw
    ``P(yes)``). Used by LM self-evaluation scorers."""

    prompt: str
    yes: str = "Yes"
    no: str | None = "No"


def yes_probability(p_yes: float, p_no: float | None) -> float:
    """A :class:`VerifyRequest`'s answer from the next-token probabilities of its ``yes`` and
    ``no`` tokens: ``p_yes``, or ``p_yes / (p_yes + p_no)`` when there is a ``no`` token (0.5 when
    both underflowed to 0). Every engine's ``verify_prob`` ends here, so they agree."""
    if p_no is None:
        return p_yes
    return p_yes / (p_yes + p_no) if p_yes + p_no > 0 else 0.5


@runtime_checkable
class EngineOps(Protocol):
    """The engine calls a search makes. Every method takes a batch."""

    name: str

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens beyond what the model's prompt format
        needs at the start of a prompt)."""

    def extend(self, requests: Sequence[ExtendRequest]) -> list[list[Step]]:
        """One step for each request, ``request.n`` continuations each: ``out[i]`` has
        ``requests[i].n`` :class:`Step` s, each with ``branch_id == requests[i].branch.id``,
        its new tokens and text, stop reason, summed token logprob and ``tokens_reused`` (prompt
        tokens of this continuation served from cache). The branch itself is not modified."""

    def score_logprobs(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[float]:
        """For each ``(context_ids, continuation_ids)``: the summed log-probability of the
        continuation given the context."""

    def verify_prob(self, requests: Sequence[VerifyRequest]) -> list[float]:
        """For each request, the probability of its ``yes`` token (see :class:`VerifyRequest`)."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised embedding per text (all of one dimension)."""

    def kv_stats(self) -> KVStats:
        """Engine-wide KV accounting so far: tokens computed vs reused, blocks held now and
        the peak."""
