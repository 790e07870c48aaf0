"""Scorers: programmatic verifiers, an arithmetic step checker (a PRM), LM self-evaluation, and
the aggregation of step scores into path scores. See :mod:`ttc_plugins.scoring.base`."""

from .aggregate import aggregate
from .base import OracleItem, Scorer, ScoreItem
from .verifiers import extract_answer, integers_equal, math_equal

__all__ = ["OracleItem", "Scorer", "ScoreItem", "aggregate", "extract_answer", "integers_equal", "math_equal"]
