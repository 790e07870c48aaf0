"""What a search needs from an engine: the :class:`EngineOps` protocol.

Strategies never hold engine objects; the driver hands every engine call to an ``EngineOps``.
Backends (vLLM, SGLang, the in-process HF engine :mod:`ttc_plugins.search.hf_ops`) implement it.

All calls are *batched*: ``extend`` receives the live branches of every concurrent search in
one list, so an engine schedules them together and shares their prefixes.

The engine calls are coroutines (``aextend``, ``ascore_logprobs``, ``averify_prob``, ``aembed``):
:func:`~ttc_plugins.search.driver.arun_search` awaits them on the loop the engine serves from, and
only the driver calls them (strategies and scorers yield operations). The synchronous methods
(``extend``, ...) and :func:`~ttc_plugins.search.driver.run_search` are thin wrappers that run
those coroutines to completion with the engine's :meth:`EngineOps.run`. An engine whose calls
block (an in-process engine, plain transformers) implements the synchronous methods and takes the
coroutines from :class:`SyncEngineOps`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Coroutine, Protocol, Sequence, TypeVar, runtime_checkable

from ..types import Branch, KVStats, RequestContext, Step

__all__ = [
    "EngineOps",
    "SyncEngineOps",
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


T = TypeVar("T")


@runtime_checkable
class EngineOps(Protocol):
    """The engine calls a search makes. Every call takes a batch."""

    name: str

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens beyond what the model's prompt format
        needs at the start of a prompt)."""

    async def aextend(self, requests: Sequence[ExtendRequest]) -> list[list[Step]]:
        """One step for each request, ``request.n`` continuations each: ``out[i]`` has
        ``requests[i].n`` :class:`Step` s, each with ``branch_id == requests[i].branch.id``,
        its new tokens and text, stop reason, summed token logprob and ``tokens_reused`` (prompt
        tokens of this continuation served from cache). The branch itself is not modified."""

    async def ascore_logprobs(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[float]:
        """For each ``(context_ids, continuation_ids)``: the summed log-probability of the
        continuation given the context."""

    async def averify_prob(self, requests: Sequence[VerifyRequest]) -> list[float]:
        """For each request, the probability of its ``yes`` token (see :class:`VerifyRequest`)."""

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised embedding per text (all of one dimension)."""

    def kv_stats(self) -> KVStats:
        """Engine-wide KV accounting so far: tokens computed vs reused, blocks held now and
        the peak."""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one of this engine's coroutines to completion for a synchronous caller."""


def run_on_private_loop(owner: Any, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on ``owner``'s own event loop (created on first use): the
    synchronous API over engines whose calls need no particular loop. Called where a loop is
    already running (a notebook), the private loop runs in a helper thread while the caller waits,
    as any blocking call there would."""
    loop = getattr(owner, "_sync_loop", None)
    if loop is None or loop.is_closed():
        loop = owner._sync_loop = asyncio.new_event_loop()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return loop.run_until_complete(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ttc-sync") as pool:
        return pool.submit(loop.run_until_complete, coro).result()


class SyncEngineOps:
    """The coroutines of an EngineOps whose engine calls block (they run inline: there is no loop
    to free while a blocking engine works), over its synchronous ``extend``, ``score_logprobs``,
    ``verify_prob`` and ``embed``."""

    async def aextend(self, requests: Sequence[ExtendRequest]) -> list[list[Step]]:
        return self.extend(requests)  # type: ignore[attr-defined]

    async def ascore_logprobs(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[float]:
        return self.score_logprobs(pairs)  # type: ignore[attr-defined]

    async def averify_prob(self, requests: Sequence[VerifyRequest]) -> list[float]:
        return self.verify_prob(requests)  # type: ignore[attr-defined]

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed(texts)  # type: ignore[attr-defined]

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return run_on_private_loop(self, coro)
