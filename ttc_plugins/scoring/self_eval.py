"""Scorers that ask the policy model itself, through the same engine.

- ``self_eval``: shows the model the problem and the path so far with a verification question
  and scores by the probability of the ``yes`` token (``P(yes) / (P(yes) + P(no))``), one batched
  verification (a :class:`~.base.VerifyOp` the driver sends to the engine) for the branches of
  every search in the round;
- ``logprob``: the geometric-mean token probability of the latest step (``exp(logprob / tokens)``),
  from what the engine already returned; costs no engine call.
"""

from __future__ import annotations

import math
from typing import Sequence

from pydantic import ConfigDict, Field, field_validator

from ttc_plugins.request_model import RequestModel

from .. import hookimpl
from ..types import Score
from .base import Scorer, ScoreItem, VerifyOp

DEFAULT_TEMPLATE = (
    "{prompt}{path}\n\nQuestion: is the last step above correct? Answer Yes or No.\nAnswer:"
)


class SelfEval(Scorer):
    name = "self_eval"
    kind = "process"
    uses_engine = True

    class Params(RequestModel):
        model_config = ConfigDict(frozen=True)
        template: str = Field(DEFAULT_TEMPLATE, description="with {prompt} and {path}")
        yes: str = " Yes"
        no: str | None = " No"

        @field_validator("template")
        @classmethod
        def _has_fields(cls, v: str) -> str:
            if "{path}" not in v:
                raise ValueError("template must contain {path}")
            try:
                v.format(prompt="", path="")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"template may only use {{prompt}} and {{path}}: {exc}") from None
            return v

    def score(self, items: Sequence[ScoreItem]):
        from ..search.engine import VerifyRequest

        reqs = [
            VerifyRequest(prompt=self.params.template.format(prompt=it.prompt, path=it.branch.text),
                          yes=self.params.yes, no=self.params.no)
            for it in items
        ]
        probs = (yield VerifyOp(reqs)) if reqs else []
        return [self._score(p) for p in probs]


class StepLogprob(Scorer):
    name = "logprob"
    kind = "process"

    def score(self, items: Sequence[ScoreItem]) -> list[Score]:
        out = []
        for it in items:
            if not it.branch.steps or not it.branch.steps[-1].token_ids:
                out.append(self._score(0.0))
                continue
            st = it.branch.steps[-1]
            out.append(self._score(math.exp(st.logprob / len(st.token_ids)), logprob=st.logprob))
        return out


@hookimpl
def ttc_register_scorers(register) -> None:
    register(SelfEval)
    register(StepLogprob)
