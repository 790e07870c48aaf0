"""The ``hashing`` embedder: deterministic, normalised, close only for near-copies."""

from __future__ import annotations

import math

from ttc_plugins.embedding import HashingEmbedder


def _cos(u, v):
    return sum(x * y for x, y in zip(u, v))


def test_vectors_are_unit_length_and_deterministic():
    a = HashingEmbedder()(["5 + 3 = 8", ""])
    assert a == HashingEmbedder()(["5 + 3 = 8", ""])
    assert all(len(v) == 256 for v in a)
    assert math.isclose(sum(x * x for x in a[0]), 1.0)


def test_only_near_copies_fall_within_its_cluster_distance():
    a, copy, reworded = HashingEmbedder()(["5 + 3 = 8 apples.", "5 + 3 = 8 apples", "Adding 3 to 5 gives 8."])
    assert 1 - _cos(a, copy) < HashingEmbedder.cluster_distance < 1 - _cos(a, reworded)


def test_the_old_import_path_still_works():
    from ttc_plugins.testing.memory_engine import HashingEmbedder as Old

    assert Old is HashingEmbedder
