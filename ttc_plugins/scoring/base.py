"""The scorer interface.

A scorer is a class with a unique ``name``, a pydantic ``Params`` model (extra fields forbidden),
``kind`` (``"process"``: judges the latest step of a partial path; ``"outcome"``: judges a
finished path's answer) and ``uses_engine`` (whether it asks the engine). The driver builds one
instance per search from ``ttc.search.scorer`` / ``scorer_args`` and calls :meth:`Scorer.score`
with the items of *every* search that uses an equal scorer in that round, in one batch.

A scorer never holds an engine: one that needs engine work (a yes/no verification, token
log-probabilities, a reward model's step scores) is a generator that ``yield``s an operation
(:class:`VerifyOp`, :class:`LogprobsOp`, :class:`RewardOp`) and receives its result, as
strategies do; the driver makes the engine call (batched, and awaited on an asynchronous engine)::

    def score(self, items):
        probs = yield VerifyOp([VerifyRequest(prompt=..., yes=" Yes", no=" No") for it in items])
        return [self._score(p) for p in probs]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generator, Literal, Sequence

from pydantic import BaseModel, ConfigDict

from ttc_plugins.request_model import RequestModel

from ..types import Branch, Score, canonical_json

if TYPE_CHECKING:  # pragma: no cover
    from ..search.engine import EngineOps, VerifyRequest


class NoParams(RequestModel):
    model_config = ConfigDict(frozen=True)


@dataclass(frozen=True)
class ScoreItem:
    """One thing to score: the search's prompt text and the branch (its text, steps, tokens).
    It has no reference answer: a scorer that is not an oracle cannot read one."""

    prompt: str
    branch: Branch


@dataclass(frozen=True)
class OracleItem(ScoreItem):
    """What an oracle scorer (``Scorer.oracle``) gets: a :class:`ScoreItem` plus the problem's
    reference answer. The driver builds these for oracle scorers only."""

    reference: str | None = None


@dataclass(frozen=True)
class VerifyOp:
    """Ask the engine's model yes/no questions: the result is one probability per request
    (``EngineOps.averify_prob``)."""

    requests: Sequence["VerifyRequest"]


@dataclass(frozen=True)
class LogprobsOp:
    """Summed log-probabilities of continuations given contexts (``EngineOps.ascore_logprobs``):
    one float per ``(context_ids, continuation_ids)`` pair."""

    pairs: Sequence[tuple[Sequence[int], Sequence[int]]]


@dataclass(frozen=True)
class RewardOp:
    """Step scores from the reward model ``model`` served beside the engine: for each
    ``(prompt, step texts)``, one probability of "correct" per step."""

    model: str
    paths: Sequence[tuple[str, Sequence[str]]]


ScorerOp = VerifyOp | LogprobsOp | RewardOp


class Scorer:
    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    kind: ClassVar[Literal["process", "outcome"]] = "process"
    uses_engine: ClassVar[bool] = False
    #: reads the problem's reference answer (:class:`OracleItem`): its search is the pass@k
    #: ceiling, not a search a user can run on a new question; benchmarks report it apart.
    #: Every other scorer gets plain :class:`ScoreItem` s, which hold no reference.
    oracle: ClassVar[bool] = False

    def __init__(self, params: BaseModel):
        self.params = params

    def batch_key(self) -> str:
        """Scorers with equal keys are scored in one call (same class, same arguments)."""
        return f"{type(self).__module__}.{type(self).__qualname__}:{canonical_json(self.params.model_dump(mode='json'))}"

    def check(self, engine: "EngineOps") -> None:
        """Before a search's first engine call: raise :class:`~ttc_plugins.errors.TTCParamError`
        (naming the field) when ``engine`` cannot serve this scorer, e.g. a reward model it does
        not host. Default: nothing to check."""

    def score(self, items: Sequence[ScoreItem]) -> "list[Score] | Generator[ScorerOp, Any, list[Score]]":
        """One :class:`~ttc_plugins.types.Score` per item, in order: returned, or (for engine work)
        returned by a generator that yields :data:`ScorerOp` s (see the module docstring)."""
        raise NotImplementedError  # pragma: no cover

    def _score(self, value: float, **detail) -> Score:
        return Score(value=float(value), kind=self.kind, scorer=self.name, detail=detail)


def run_scorer(scorer: Scorer, items: Sequence[ScoreItem], engine: "EngineOps") -> list[Score]:
    """Score ``items`` over ``engine`` for a synchronous caller, making the engine calls the
    scorer asks for (what the driver does)."""
    from ..search.driver import score_batch

    return engine.run(score_batch(scorer, items, engine))
