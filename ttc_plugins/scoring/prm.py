"""A process reward model served by an engine of its own, as the ``prm`` scorer.

The PRM is a second engine beside the policy (vLLM: the pooling runner with a PRM architecture and
its step tag; SGLang: a reward-model engine). The host that owns the engines hands them to the
policy's EngineOps under a name (``reward_models={"prm": ...}``); a search selects one with::

    {"scorer": "prm", "scorer_args": {"model": "prm"}, "aggregation": "min"}

Each scoring call shows the PRM the prompt followed by the path's steps, each closed by the step
tag (``prompt + step_1 + tag + step_2 + tag ...``, the Qwen2.5-Math-PRM recipe); the PRM returns
one probability of "correct" per tag. The step score is the latest step's probability (a causal
PRM's earlier-step outputs do not change as the path grows), so a branch's step scores are exactly
the PRM's outputs for its steps and ``aggregation`` (``last``, ``min``, ``prod``, ``mean``)
combines them into the path score.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from pydantic import ConfigDict, Field

from ttc_plugins.request_model import RequestModel

from .. import hookimpl
from ..errors import RewardModelUnavailable, TTCError, TTCParamError

from .base import RewardOp, Scorer, ScoreItem

__all__ = ["QWEN_STEP_TAG", "ProcessRewardScorer", "RewardModel", "prm_text", "reward_model_of", "step_rewards"]

#: The step tag of Qwen2.5-Math-PRM (and of the tiny test PRM).
QWEN_STEP_TAG = "<extra_0>"


@runtime_checkable
class RewardModel(Protocol):
    """A process reward model on an engine of its own. The driver awaits it on the loop that runs
    the search (a served PRM: the API server's loop), so the call must not block that loop."""

    #: The text that closes a step (a special token of the PRM's tokenizer).
    step_tag: str

    async def astep_rewards(self, texts: Sequence[str]) -> list[list[float]]:
        """For each text, the probability that each step is correct: one value per step tag, in
        order. One batch."""


def prm_text(prompt: str, steps: Sequence[str], step_tag: str) -> str:
    """What the PRM reads: the prompt, then each step (stripped, any tag inside it removed)
    closed by ``step_tag``."""
    return prompt + "".join(s.replace(step_tag, "").strip() + step_tag for s in steps)


async def step_rewards(engine: Any, name: str, paths: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
    """What a :class:`~.base.RewardOp` asks: the reward model ``name`` of ``engine`` scores each
    ``(prompt, steps)`` path, shown as :func:`prm_text` with the model's own step tag."""
    rm = reward_model_of(engine, name)
    texts = [prm_text(prompt, steps, rm.step_tag) for prompt, steps in paths]
    try:
        return await rm.astep_rewards(texts)
    except TTCError:
        raise
    except Exception as exc:  # noqa: BLE001 - down, unreachable, or it died mid-search: a 503 for this search
        raise RewardModelUnavailable(name, f"{type(exc).__name__}: {exc}") from exc


def reward_model_of(engine: Any, name: str) -> RewardModel:
    """The reward model ``name`` that ``engine`` (an EngineOps) serves.

    :raises TTCParamError: naming ``ttc.search.scorer_args.model`` when there is no such model.
    """
    models: Mapping[str, RewardModel] = getattr(engine, "reward_models", None) or {}
    if name not in models:
        known = ", ".join(sorted(models)) or "none (start the engine with a reward model)"
        raise TTCParamError("ttc.search.scorer_args.model", f"no reward model {name!r} on this engine; served: {known}")
    return models[name]


class ProcessRewardScorer(Scorer):
    """``prm``: the latest step's probability of being correct, from the engine-served PRM."""

    name = "prm"
    kind = "process"
    uses_engine = True

    class Params(RequestModel):
        model_config = ConfigDict(frozen=True)
        model: str = Field("prm", min_length=1, description="name of a reward model the engine serves")

    def check(self, engine: Any) -> None:
        reward_model_of(engine, self.params.model)

    def score(self, items: Sequence[ScoreItem]):
        if not items:
            return []
        steps = [[st.text for st in it.branch.steps] for it in items]
        rewards = yield RewardOp(self.params.model, [(it.prompt, s) for it, s in zip(items, steps)])
        out = []
        for it, s, r in zip(items, steps, rewards):
            if len(r) != len(s):
                raise RuntimeError(f"reward model {self.params.model!r} returned {len(r)} step scores for "
                                   f"{len(s)} steps of branch {it.branch.id!r}")
            out.append(self._score(r[-1] if r else 0.0, steps=list(r)))
        return out


@hookimpl
def ttc_register_scorers(register) -> None:
    register(ProcessRewardScorer)
