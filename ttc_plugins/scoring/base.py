"""The scorer interface.

A scorer is a class with a unique ``name``, a pydantic ``Params`` model (extra fields forbidden),
``kind`` (``"process"``: judges the latest step of a partial path; ``"outcome"``: judges a
finished path's answer) and ``uses_engine`` (whether it calls the engine). The driver builds one
instance per search from ``ttc.search.scorer`` / ``scorer_args`` and calls :meth:`Scorer.score`
with the items of *every* search that uses an equal scorer in that round, in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Sequence

from pydantic import BaseModel, ConfigDict

from ttc_plugins.request_model import RequestModel

from ..types import Branch, Score, canonical_json

if TYPE_CHECKING:  # pragma: no cover
    from ..search.engine import EngineOps


class NoParams(RequestModel):
    model_config = ConfigDict(frozen=True)


@dataclass(frozen=True)
class ScoreItem:
    """One thing to score: the search's prompt text, the branch (its text, steps, tokens) and the
    reference answer when the problem has one."""

    prompt: str
    branch: Branch
    reference: str | None = None


class Scorer:
    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    kind: ClassVar[Literal["process", "outcome"]] = "process"
    uses_engine: ClassVar[bool] = False

    def __init__(self, params: BaseModel):
        self.params = params

    def batch_key(self) -> str:
        """Scorers with equal keys are scored in one call (same class, same arguments)."""
        return f"{type(self).__module__}.{type(self).__qualname__}:{canonical_json(self.params.model_dump(mode='json'))}"

    def check(self, engine: "EngineOps") -> None:
        """Before a search's first engine call: raise :class:`~ttc_plugins.errors.TTCParamError`
        (naming the field) when ``engine`` cannot serve this scorer, e.g. a reward model it does
        not host. Default: nothing to check."""

    def score(self, items: Sequence[ScoreItem], engine: "EngineOps") -> list[Score]:  # pragma: no cover
        raise NotImplementedError

    def _score(self, value: float, **detail) -> Score:
        return Score(value=float(value), kind=self.kind, scorer=self.name, detail=detail)
