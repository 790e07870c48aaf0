"""The old testing names of the in-process engine stay importable and are the core's objects."""

from __future__ import annotations


def test_memory_engine_names_are_the_core_engine_and_seed():
    from ttc_plugins.embedding import HashingEmbedder
    from ttc_plugins.search.hf_ops import HFEngineOps
    from ttc_plugins.search.seeds import continuation_seed
    from ttc_plugins.testing import memory_engine

    assert memory_engine.MemoryEngine is HFEngineOps
    assert memory_engine.continuation_seed is continuation_seed
    assert memory_engine.HashingEmbedder is HashingEmbedder
