"""Token-level beam search: the selection and stopping rules, engine-free.

An engine backend feeds :class:`TokenBeam` one step at a time (each live beam's top next tokens
with their log-probabilities) and applies what it answers (which live beam continues with which
token); the engine keeps the KV, this module keeps the scores. The rules are HF transformers'
(``num_beams``, ``length_penalty``, ``early_stopping``), stated here exactly because the reference
beam search in ``integration/common/hf_reference.py`` re-implements them independently:

- a hypothesis is its generated tokens ``g`` (``L = len(g)`` including a terminating EOS / stop
  token) and the sum ``s`` of their raw log-probabilities; its score is ``s / L ** length_penalty``;
- each step, every live beam ``b`` proposes its ``2 * width`` most likely next tokens; candidates
  are ranked by cumulative log-probability ``s_b + logprob`` (ties: earlier beam, then likelier
  token). Walking the ranking, a terminal candidate (EOS unless ``ignore_eos``, a stop token, or
  a token after which the generated text contains a stop string) finishes a hypothesis when its
  rank is below ``width``, otherwise it is skipped; any other candidate extends a live beam,
  until ``width`` live beams are chosen;
- finished hypotheses keep the ``width`` best scores; after ``max_tokens`` steps the live beams
  finish too (``length``);
- the search ends early once ``width`` hypotheses finished and: ``early_stopping=True``: at once;
  ``False``: the best live beam cannot beat the worst finished one any more at its current length
  (``s_best / L ** length_penalty <= worst``); ``"never"``: same, with ``L = max_tokens`` when
  ``length_penalty > 0`` (the exact bound).

The result is the finished hypotheses, best score first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

from pydantic import ConfigDict, Field, field_validator

from ttc_plugins.request_model import RequestModel

EarlyStopping = bool | Literal["never"]


class BeamParams(RequestModel):
    """The ``ttc.beam`` object of a request (the engine checks ``width`` against its own limit)."""

    model_config = ConfigDict(frozen=True)

    width: int = Field(..., ge=1, description="beams kept per step")
    length_penalty: float = Field(1.0, ge=-10.0, le=10.0, description="score = logprob sum / length ** this")
    early_stopping: EarlyStopping = Field(False, description="HF semantics: True, False or 'never'")

    @field_validator("early_stopping", mode="before")
    @classmethod
    def _early_stopping(cls, v: object) -> object:
        if isinstance(v, bool) or v == "never":
            return v
        raise ValueError('must be true, false or "never"')


@dataclass(frozen=True)
class Hypothesis:
    """A finished beam: generated tokens, summed raw log-probability, score, why it ended."""

    token_ids: tuple[int, ...]
    cumulative_logprob: float
    score: float
    finish_reason: str  # "stop" (EOS / stop token / stop string) or "length"
    stop_reason: int | str | None = None  # the stop token or stop string (None: EOS or length)

    def to_json(self) -> dict:
        return {"token_ids": list(self.token_ids), "cumulative_logprob": self.cumulative_logprob,
                "score": self.score, "finish_reason": self.finish_reason, "stop_reason": self.stop_reason}


@dataclass(frozen=True)
class Choice:
    """One live beam of the next step: ``parent`` (index into the previous live beams) + ``token``."""

    parent: int
    token: int
    logprob: float


def beam_score(cumulative_logprob: float, length: int, length_penalty: float) -> float:
    return cumulative_logprob / (max(length, 1) ** length_penalty)


@dataclass
class TokenBeam:
    """The state of one beam search over one prompt."""

    params: BeamParams
    max_tokens: int
    terminal: Callable[[int], bool]
    #: stop strings: given a candidate's generated tokens, the stop string its text contains, if any
    stop_text: Callable[[tuple[int, ...]], str | None] | None = None
    #: live beams: generated tokens and cumulative log-probabilities, index-aligned
    tokens: list[tuple[int, ...]] = field(default_factory=lambda: [()])
    cumulative: list[float] = field(default_factory=lambda: [0.0])
    finished: list[Hypothesis] = field(default_factory=list)
    done: bool = False

    @property
    def width(self) -> int:
        return self.params.width

    @property
    def num_candidates(self) -> int:
        """How many next tokens (by probability) each live beam must propose."""
        return 2 * self.width

    def step(self, proposals: Sequence[Sequence[tuple[int, float]]]) -> list[Choice]:
        """Advance one token.

        :param proposals: for each live beam (same order as :attr:`tokens`), its most likely next
            tokens as ``(token_id, logprob)``, best first (at least ``min(2 * width, vocab)``).
        :return: the new live beams, in order (empty when the search is done).
        """
        if self.done:
            raise RuntimeError("step() on a finished beam search")
        if len(proposals) != len(self.tokens):
            raise ValueError(f"{len(proposals)} proposals for {len(self.tokens)} live beams")
        ranked = sorted(
            ((self.cumulative[b] + lp, b, rank, tok)
             for b, props in enumerate(proposals)
             for rank, (tok, lp) in enumerate(props[: self.num_candidates])),
            key=lambda c: (-c[0], c[1], c[2]),
        )
        length = len(self.tokens[0]) + 1
        chosen: list[Choice] = []
        for rank, (cum, b, _, tok) in enumerate(ranked):
            stop: int | str | None = tok if self.terminal(tok) else None
            if stop is None and self.stop_text is not None:
                stop = self.stop_text(self.tokens[b] + (tok,))
            if stop is not None:
                if rank < self.width:
                    self._finish(self.tokens[b] + (tok,), cum, "stop", stop)
                continue
            chosen.append(Choice(b, tok, cum - self.cumulative[b]))
            if len(chosen) == self.width:
                break
        self.tokens = [self.tokens[c.parent] + (c.token,) for c in chosen]
        self.cumulative = [self.cumulative[c.parent] + c.logprob for c in chosen]
        if not chosen or length >= self.max_tokens:
            for toks, cum in zip(self.tokens, self.cumulative):
                self._finish(toks, cum, "length", None)
            return self._end()
        if self._can_stop(length):
            return self._end()
        return chosen

    def results(self) -> list[Hypothesis]:
        """Finished hypotheses, best score first (complete once :attr:`done`)."""
        return sorted(self.finished, key=lambda h: -h.score)

    def _end(self) -> list[Choice]:
        self.done = True
        self.tokens, self.cumulative = [], []
        return []

    def _finish(self, toks: tuple[int, ...], cum: float, reason: str, stop: int | None) -> None:
        score = beam_score(cum, len(toks), self.params.length_penalty)
        if len(self.finished) >= self.width and score <= min(h.score for h in self.finished):
            return
        self.finished.append(Hypothesis(toks, cum, score, reason, stop))
        if len(self.finished) > self.width:
            self.finished.remove(min(self.finished, key=lambda h: h.score))

    def _can_stop(self, length: int) -> bool:
        if len(self.finished) < self.width:
            return False
        mode = self.params.early_stopping
        if mode is True:
            return True
        lp = self.params.length_penalty
        best = max(self.cumulative)
        horizon = self.max_tokens if (mode == "never" and lp > 0) else length
        return beam_score(best, horizon, lp) <= min(h.score for h in self.finished)
