"""Process reward models served by SGLang: the engine side of the ``prm`` scorer
(:mod:`ttc_plugins.scoring.prm`).

A PRM runs as its own SGLang engine in embedding mode (``is_embedding``) with the architecture
``Qwen2ForProcessRewardModel`` (:mod:`.models.qwen2_prm`, registered by the plugin). SGLang pools one
vector per request (the last token's), so the reward of step ``k`` is read from the prompt cut right
after step ``k``'s tag: one request per step, all in one batch; the PRM is causal, so this equals the
per-tag outputs of one forward (the radix cache shares the prefixes; a step read from cached KV
differed from a fresh forward by ~1e-7). The step reward is the softmax probability of label 1 ("correct").

Two ways to reach the engine:

- :meth:`SGLangRewardModel.over_engine`: an in-process ``sgl.Engine(model_path=prm, is_embedding=True)``;
- :meth:`SGLangRewardModel.over_http`: a PRM server (``python -m sglang.launch_server --model-path prm
  --is-embedding``) through its native ``/encode`` endpoint. An OpenAI server with the plugin uses
  these for ``TTC_SGLANG_CONFIG`` ``reward_models`` (:func:`served_reward_models`).
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from ttc_plugins.scoring.prm import QWEN_STEP_TAG

__all__ = ["SGLangRewardModel", "served_reward_models"]

_CORRECT = 1  # label index of "this step is correct"
Encode = Callable[[list[list[int]]], Awaitable[list[list[float]]]]


def _single_or_batch(batch: list[list[int]]) -> Any:
    # a batch of one list trips SGLang's embedding path (its own warmup works around it): send one prompt
    return batch[0] if len(batch) == 1 else batch


def _embeddings(out: Any) -> list[list[float]]:
    return [list(o["embedding"]) for o in (out if isinstance(out, list) else [out])]


class SGLangRewardModel:
    """A PRM on an SGLang engine; ``encode`` maps token-id prompts to the head's logits."""

    def __init__(self, tokenizer: Any, step_tag_id: int, encode: Encode,
                 run: Callable[[Any], Any] = asyncio.run):
        self.tokenizer = tokenizer
        self.step_tag_id = int(step_tag_id)
        self.step_tag = tokenizer.convert_ids_to_tokens(self.step_tag_id)
        self._encode = encode
        self._run = run  # how a synchronous caller runs a coroutine of this model
        self.calls = 0

    def step_rewards(self, texts: Sequence[str]) -> list[list[float]]:
        """:meth:`astep_rewards` for a synchronous caller."""
        return self._run(self.astep_rewards(texts))

    @staticmethod
    def step_tag_id_of(model: str | Path, tokenizer: Any, step_tag: str = QWEN_STEP_TAG) -> int:
        """``config.json``'s ``step_tag_id`` when present, else the id of ``step_tag`` (Qwen's ``<extra_0>``)."""
        config = Path(model) / "config.json"
        tag_id = json.loads(config.read_text()).get("step_tag_id") if config.is_file() else None
        return int(tag_id) if tag_id is not None else int(tokenizer.convert_tokens_to_ids(step_tag))

    @classmethod
    def over_engine(cls, engine: Any) -> "SGLangRewardModel":
        """Over an in-process ``sgl.Engine(..., is_embedding=True)`` serving the PRM."""
        from sglang.srt.managers.io_struct import EmbeddingReqInput

        manager = engine.tokenizer_manager

        async def encode(batch: list[list[int]]) -> list[list[float]]:  # on the engine's loop
            gen = manager.generate_request(EmbeddingReqInput(input_ids=_single_or_batch(batch)), None)
            return _embeddings(await gen.__anext__())

        return cls.for_model(engine.server_args.model_path, encode, run=engine.loop.run_until_complete)

    @classmethod
    def over_http(cls, url: str, model: str, *, timeout: float = 300.0) -> "SGLangRewardModel":
        """Over a PRM server at ``url``; ``model`` is its model directory (tokenizer, step tag)."""
        import httpx

        async def encode(batch: list[list[int]]) -> list[list[float]]:  # never blocks the server's loop
            async with httpx.AsyncClient(timeout=timeout) as client:
                resp = await client.post(f"{url.rstrip('/')}/encode", json={"input_ids": _single_or_batch(batch)})
            resp.raise_for_status()
            return _embeddings(resp.json())

        return cls.for_model(model, encode)

    @classmethod
    def for_model(cls, model: str | Path, encode: Encode, run: Callable[[Any], Any] = asyncio.run) -> "SGLangRewardModel":
        """With the PRM's own HF tokenizer (what the HF reference reads; the tokenizer manager's
        copy split the tiny PRM's texts differently) and step tag."""
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(model), local_files_only=True)
        return cls(tok, cls.step_tag_id_of(model, tok), encode, run)

    async def astep_rewards(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        cuts: list[list[int]] = []
        owners: list[int] = []
        for i, text in enumerate(texts):
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            for pos, t in enumerate(ids):
                if t == self.step_tag_id:
                    cuts.append(ids[: pos + 1])
                    owners.append(i)
        logits = await self._encode(cuts) if cuts else []
        if len(logits) != len(cuts):
            raise RuntimeError(f"reward model returned {len(logits)} outputs for {len(cuts)} steps")
        rewards: list[list[float]] = [[] for _ in texts]
        for i, row in zip(owners, logits):
            top = max(row)
            exp = [math.exp(v - top) for v in row]
            rewards[i].append(exp[_CORRECT] / sum(exp))
        return rewards


_served: dict[str, SGLangRewardModel] = {}


async def served_reward_models() -> dict[str, SGLangRewardModel]:
    """The reward models of ``TTC_SGLANG_CONFIG`` ``reward_models`` (each a PRM server), built once
    per process, awaited on the server's loop."""
    from . import _state

    for name, server in _state.config().reward_models.items():
        if name not in _served:
            _served[name] = SGLangRewardModel.over_http(server.url, server.model)
    return dict(_served)
