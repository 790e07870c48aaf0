"""Process reward models served by vLLM: the engine side of the ``prm`` scorer
(:mod:`ttc_plugins.scoring.prm`).

A PRM is a second vLLM engine on the pooling runner with a PRM architecture (e.g.
``Qwen2ForProcessRewardModel``) and its step tag in ``pooler_config``; ``token_classify`` pooling
returns, for every step-tag position of a prompt, the probabilities of the model's labels, and the
step reward is that of label 1 ("correct"). In Python::

    prm = LLM(**prm_engine_kwargs("/models/prm"))
    ops = VLLMEngineOps(policy_llm, reward_models={"prm": VLLMRewardModel(prm)})
    run_search(ops, prompts, {"strategy": "beam", "scorer": "prm", "aggregation": "min", ...})

Two engines in one Python process: keep at most one of them in-process. With the policy engine
in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), build the PRM engine with the variable set to
``1`` after ``vllm.envs.disable_envs_cache()`` (vLLM freezes its environment once an in-process
engine started): an in-process PRM engine's shutdown would tear down the distributed state the
policy engine still uses.

On the OpenAI server, ``additional_config.ttc.reward_models`` names them (see
:func:`served_reward_models`); the server starts each once, in the API server process, on the
first search request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
import logging
from typing import Any, Mapping, Sequence

__all__ = ["AsyncVLLMRewardModel", "VLLMRewardModel", "prm_engine_kwargs", "served_reward_models"]

_ids = itertools.count()
_CORRECT = 1  # label index of "this step is correct" (Qwen2.5-Math-PRM, the tiny PRM)


def prm_engine_kwargs(model: str, *, step_tag_id: int | None = None, dtype: str = "auto", max_model_len: int = 2048,
                      kv_cache_memory_bytes: int = 256 * 2**20, **overrides: Any) -> dict[str, Any]:
    """Engine arguments (``vllm.LLM`` / ``AsyncEngineArgs``) for a PRM: pooling runner, eager,
    stats off (its gauges would mix with the policy engine's in one process). ``step_tag_id``
    defaults to the model's ``config.json`` ``step_tag_id`` when it has one (else vLLM's default
    for the architecture, Qwen's ``<extra_0>``)."""
    if step_tag_id is None:
        config = Path(model) / "config.json"
        if config.is_file():
            step_tag_id = json.loads(config.read_text()).get("step_tag_id")
    kw: dict[str, Any] = dict(
        model=model, runner="pooling", dtype=dtype, enforce_eager=True, max_model_len=max_model_len,
        kv_cache_memory_bytes=kv_cache_memory_bytes, disable_log_stats=True,
    )
    if step_tag_id is not None:
        kw["pooler_config"] = {"step_tag_id": int(step_tag_id)}
    kw.update(overrides)
    return kw


class _PRM:
    """Tokenization and label read-out shared by the synchronous and asynchronous PRMs."""

    def _init_prm(self, tokenizer: Any, model_config: Any) -> None:
        pooler = getattr(model_config, "pooler_config", None)
        tag_id = getattr(pooler, "step_tag_id", None)
        if tag_id is None:
            raise ValueError("the reward model engine has no step_tag_id (pooler_config); is it a PRM "
                             "started with runner='pooling'?")
        self.tokenizer = tokenizer
        self.step_tag_id = int(tag_id)
        self.step_tag = tokenizer.convert_ids_to_tokens(self.step_tag_id)
        self.calls = 0

    def token_ids(self, text: str) -> list[int]:
        """What the PRM reads for ``text`` (the step tag is a special token: one id per tag)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def step_rewards(self, texts: Sequence[str]) -> list[list[float]]:
        """:meth:`astep_rewards` for a synchronous caller (an in-process ``LLM``'s PRM)."""
        from ttc_plugins.search.engine import run_on_private_loop

        return run_on_private_loop(self, self.astep_rewards(texts))

    async def astep_rewards(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        prompts = [self.token_ids(t) for t in texts]
        outputs = await self._aencode(prompts) if prompts else []
        rewards = []
        for ids, o in zip(prompts, outputs):
            data = o.outputs.data
            tags = ids.count(self.step_tag_id)
            if tuple(data.shape) != (tags, data.shape[-1]):
                raise RuntimeError(f"reward model returned shape {tuple(data.shape)} for {tags} step tags")
            rewards.append([float(v) for v in data[:, _CORRECT].float()])
        return rewards

    async def _aencode(self, prompts: Sequence[Sequence[int]]) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError


class VLLMRewardModel(_PRM):
    """A PRM on an in-process ``vllm.LLM`` (built with :func:`prm_engine_kwargs`): ``LLM`` is
    synchronous, so a batch runs right here, with nothing to await."""

    def __init__(self, llm: Any):
        self.llm = llm
        self._init_prm(llm.get_tokenizer(), llm.llm_engine.model_config)

    async def _aencode(self, prompts: Sequence[Sequence[int]]) -> list[Any]:
        from vllm.inputs import TokensPrompt

        return self.llm.encode([TokensPrompt(prompt_token_ids=list(p)) for p in prompts],
                               pooling_task="token_classify", use_tqdm=False)


class AsyncVLLMRewardModel(_PRM):
    """A PRM on an ``AsyncLLM``, awaited on the loop it runs on (the API server's)."""

    def __init__(self, client: Any, loop: asyncio.AbstractEventLoop):
        self.client = client
        self.loop = loop
        self._init_prm(client.renderer.get_tokenizer(), client.vllm_config.model_config)

    async def _aencode(self, prompts: Sequence[Sequence[int]]) -> list[Any]:
        from vllm.inputs import TokensPrompt
        from vllm.pooling_params import PoolingParams

        async def one(p: Sequence[int]) -> Any:
            final = None
            async for out in self.client.encode(TokensPrompt(prompt_token_ids=list(p)),
                                                PoolingParams(task="token_classify"), f"ttc-prm-{next(_ids)}"):
                final = out
            if final is None:
                raise RuntimeError("reward model request returned no output")
            return final

        return list(await asyncio.gather(*(one(p) for p in prompts)))


log = logging.getLogger("ttc_plugins.vllm_backend")
_served: dict[str, AsyncVLLMRewardModel] = {}
_starting: asyncio.Lock | None = None


async def served_reward_models(configured: Mapping[str, Any], names: Sequence[str]) -> dict[str, AsyncVLLMRewardModel]:
    """The reward models ``names`` of ``additional_config.ttc.reward_models`` (name ->
    :class:`~.config.RewardModelConfig`; names not configured are left out), each an ``AsyncLLM``
    started once in this process (the API server) on first use, on the running loop.

    :raises RewardModelUnavailable: a model's engine did not start (the search gets a 503; the
        next search that names it tries again).
    """
    global _starting
    wanted = [name for name in dict.fromkeys(names) if name in configured]
    missing = [name for name in wanted if name not in _served]
    if not missing:
        return {name: _served[name] for name in wanted}
    if _starting is None:
        _starting = asyncio.Lock()
    async with _starting:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from ttc_plugins.errors import RewardModelUnavailable

        loop = asyncio.get_running_loop()
        for name in missing:
            if name in _served:
                continue
            cfg = configured[name]
            try:
                args = AsyncEngineArgs(**prm_engine_kwargs(cfg.model, step_tag_id=cfg.step_tag_id, dtype=cfg.dtype,
                                                           max_model_len=cfg.max_model_len,
                                                           kv_cache_memory_bytes=cfg.kv_cache_memory_bytes))
                client = await asyncio.to_thread(AsyncLLM.from_engine_args, args)
            except Exception as exc:  # noqa: BLE001 - this search's reward model, not the server
                log.exception("ttc: reward model %r did not start", name)
                raise RewardModelUnavailable(name, f"its engine did not start: {type(exc).__name__}: {exc}") from exc
            _served[name] = AsyncVLLMRewardModel(client, loop)
    return {name: _served[name] for name in wanted}
