"""Older names of the in-process reference engine, kept for tests and out-of-tree code.

The engine is production code (``ttc run --engine hf`` runs on it), so it lives in the core:
:class:`~ttc_plugins.search.hf_ops.HFEngineOps`, seeded by
:func:`~ttc_plugins.search.seeds.continuation_seed`. Production code imports those, never this
module (``tests/test_imports.py`` checks). A :class:`ScriptedEngine` (environment double) lives in
:mod:`ttc_plugins.testing.scripted_engine`.
"""

from __future__ import annotations

from ..embedding import HashingEmbedder, SentenceEmbedder
from ..search.hf_ops import HFEngineOps
from ..search.seeds import continuation_seed

#: The engine's name in the test suites (the integration tests compare the backends with it).
MemoryEngine = HFEngineOps

__all__ = ["HashingEmbedder", "MemoryEngine", "SentenceEmbedder", "continuation_seed"]
