"""Step-level search strategies, engine-free: each is a loop over :class:`EngineOps` calls
(extend -> score -> select/prune -> fork) that the driver batches across concurrent searches.

``run_search(engine_ops, prompts, params)`` is the entry point (``await arun_search(...)`` on an
event loop)."""

from .base import SearchState, SearchStrategy, Selection
from .driver import SearchPrompt, arun_search, resolve_search, run_search
from .engine import EngineOps, ExtendRequest, SamplingConfig, StepStop, VerifyRequest
from .params import SearchParams
from .result import Candidate, SearchCounters, SearchResult

__all__ = [
    "Candidate",
    "EngineOps",
    "ExtendRequest",
    "SamplingConfig",
    "SearchCounters",
    "SearchParams",
    "SearchPrompt",
    "SearchResult",
    "SearchState",
    "SearchStrategy",
    "Selection",
    "StepStop",
    "VerifyRequest",
    "arun_search",
    "resolve_search",
    "run_search",
]
