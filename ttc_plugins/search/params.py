"""Parameters every search strategy shares; each strategy's ``Params`` extends
:class:`SearchParams` with its own fields. Unknown fields are errors (``extra="forbid"``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from ttc_plugins.request_model import RequestModel

from .engine import SamplingConfig, StepStop

Aggregation = Literal["last", "min", "prod", "mean"]


class SearchParams(RequestModel):
    """Shared search arguments (the ``ttc.search`` object minus ``strategy``)."""

    model_config = ConfigDict(frozen=True)

    width: int = Field(4, ge=1, le=4096, description="budget: samples / beams / particles / leaves")
    max_steps: int = Field(8, ge=1, le=1024, description="steps per path before it is cut")
    step_delimiter: str = Field("\n\n", min_length=1, description="text that ends a step")
    max_step_tokens: int = Field(64, ge=1, le=32768, description="new tokens per step at most")
    max_total_tokens: int = Field(1024, ge=1, description="new tokens per path at most")
    token_budget: int | None = Field(None, ge=1, description="new tokens per search at most, over all its "
                                     "branches; when spent, unfinished branches end (finish reason 'budget')")
    stop: list[str] = Field(default_factory=list, description="strings that finish a path")
    stop_on_answer: bool = Field(True, description="finish a path once a final answer is extracted from it")
    temperature: float = Field(0.8, ge=0.0, le=10.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    scorer: str | None = Field(None, description="registered scorer name; None: the strategy's default")
    scorer_args: dict[str, Any] = Field(default_factory=dict)
    aggregation: Aggregation = Field("last", description="how step scores combine into a path score")
    kv_budget_tokens: int | None = Field(None, ge=1, description="evict live branches above this many KV tokens")
    seed: int = Field(0, ge=0)

    @field_validator("stop")
    @classmethod
    def _non_empty_stops(cls, v: list[str]) -> list[str]:
        if any(not s for s in v):
            raise ValueError("stop strings must be non-empty")
        return v

    def step_stop(self) -> StepStop:
        return StepStop(delimiter=self.step_delimiter, max_tokens=self.max_step_tokens, stop=tuple(self.stop))

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(temperature=self.temperature, top_p=self.top_p, seed=self.seed)
