"""How step scores combine into one path score (``ttc.search.aggregation``)."""

from __future__ import annotations

import math
from typing import Sequence

AGGREGATIONS = ("last", "min", "prod", "mean")


def aggregate(values: Sequence[float], how: str = "last") -> float:
    """Combine a path's step scores: ``last`` (the latest verdict, e.g. an outcome score or a
    PRM that already conditions on the whole path), ``min`` (the weakest step), ``prod`` (all
    steps correct, for probabilities) or ``mean``. An unscored path scores 0.0."""
    if not values:
        return 0.0
    if how == "last":
        return float(values[-1])
    if how == "min":
        return float(min(values))
    if how == "prod":
        return float(math.prod(values))
    if how == "mean":
        return float(sum(values) / len(values))
    raise ValueError(f"unknown aggregation {how!r}; choose one of {', '.join(AGGREGATIONS)}")
