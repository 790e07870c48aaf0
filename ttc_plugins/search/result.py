"""What a search returns, and the counters the driver keeps while it runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SearchCounters:
    """Per-search accounting, filled by the driver (never by strategies).

    - ``tokens_generated``: new tokens of every continuation this search asked for;
    - ``tokens_reused`` / ``tokens_computed``: prompt-side tokens served from the engine's cache
      vs run through the model (generated tokens are always computed and are counted in
      ``tokens_computed`` too);
    - ``model_calls``: sequences a model ran for this search (continuations, verification
      prompts, scored continuations, embedded texts, whether the engine or a local embedder
      embedded them);
    - ``engine_rounds``: batched engine calls this search took part in (a local embedder's
      calls are not engine rounds);
    - ``peak_kv_tokens``: the most KV tokens its live branches held at once, counting a shared
      prefix once (what a prefix-sharing engine stores); ``peak_kv_tokens_unshared`` counts each
      branch's whole sequence;
    - ``kv_tokens_sum`` / ``kv_rounds``: the same tree's tokens *without the prompt*, summed over
      the rounds, and the number of rounds: their ratio is the ETS paper's "average KV cache size
      during the search" (sum both over searches before dividing to average over a problem set);
    - ``retained_nodes_peak`` / ``retained_nodes_sum``: step nodes of the search tree kept alive
      after each selection (peak, and summed over rounds);
    - ``engine_peak_kv_blocks``: the engine's own peak block count (engine-wide, from
      ``kv_stats``) at the end of the search.
    """

    tokens_generated: int = 0
    tokens_reused: int = 0
    tokens_computed: int = 0
    model_calls: int = 0
    engine_rounds: int = 0
    branches_created: int = 0
    branches_released: int = 0
    branches_evicted: int = 0
    peak_kv_tokens: int = 0
    peak_kv_tokens_unshared: int = 0
    kv_tokens_sum: int = 0
    kv_rounds: int = 0
    retained_nodes_peak: int = 0
    retained_nodes_sum: int = 0
    engine_peak_kv_blocks: int = 0

    @property
    def kv_tokens_avg(self) -> float:
        """Average retained-tree KV tokens per round, prompt excluded (0 before any round)."""
        return self.kv_tokens_sum / self.kv_rounds if self.kv_rounds else 0.0


@dataclass
class Candidate:
    """One complete (or cut) path the strategy considered for the answer."""

    branch_id: str
    text: str
    answer: str | None
    score: float | None
    finished: bool
    finish_reason: str | None


@dataclass
class SearchResult:
    """The answer of one search with how it was found and what it cost."""

    request_id: str
    strategy: str
    answer: str | None
    text: str
    chosen_branch_id: str | None
    chosen_path: list[str]
    scores: list[float]
    path_score: float | None
    candidates: list[Candidate] = field(default_factory=list)
    counters: SearchCounters = field(default_factory=SearchCounters)
    wall_time_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
