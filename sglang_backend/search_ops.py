""":class:`~ttc_plugins.search.engine.EngineOps` over an in-process ``sglang.Engine``
(:class:`SGLangEngineOps`) and over the HTTP server's ``TokenizerManager``
(:class:`AsyncSGLangEngineOps`): one implementation whose engine calls are coroutines, awaited on
the engine's own loop.

Semantics mirror the reference :class:`~ttc_plugins.search.hf_ops.HFEngineOps` and
:class:`~ttc_plugins.vllm_backend.search_ops.VLLMEngineOps`:

- ``extend``: every continuation of every request of one call is one entry of ONE
  ``Engine.async_generate(input_ids=[...], sampling_params=[...])`` call (the prompts are the
  branches' token ids, so children of a branch share its KV through SGLang's radix cache).
  Continuation ``i`` of a request carries ``sampling_seed=continuation_seed(seed, sampling_key, i)``
  (the same derivation as HFEngineOps and VLLMEngineOps); temperature 0 is greedy. A step ends at
  the first ``stop`` string (``"stop"``), the ``delimiter`` (``"delimiter"``, kept: ``no_stop_trim``),
  EOS (``"eos"``, the EOS token kept in ``token_ids``) or ``max_tokens`` (``"length"``).
  ``Step.text`` is the decoded ``token_ids``; ``Step.logprob`` the summed raw log-probabilities of the
  sampled tokens; ``Step.tokens_reused`` the request's ``meta_info["cached_tokens"]`` (radix hits,
  token granular with ``page_size`` 1, at most ``len(prompt) - 1``).
- ``score_logprobs``: input-token logprobs (``return_logprob`` with ``logprob_start_len``) of
  context + continuation;
- ``verify_prob``: the top logprobs of the next token (``top_logprobs_num``); a yes/no token outside
  the top-k is read exactly from ``token_ids_logprob`` of the same request;
- ``embed``: the embedder (default :class:`~ttc_plugins.embedding.HashingEmbedder`);
- ``kv_stats``: tokens computed vs reused (from ``cached_tokens``) and KV pages held / peak: the
  scheduler's ``num_used_tokens`` (SGLang's load snapshot, ``TokenizerManager.get_loads``: KV slots
  held by running requests) polled every ``kv_poll_s`` while a batch runs, divided by the page size.

Two SGLang facts shape this (sglang 0.5.23):

- per-request ``sampling_seed`` is honoured only by an engine started with
  ``enable_deterministic_inference=True`` (otherwise the sampler never reads it). SGLang refuses that
  flag with the ``torch_native`` attention backend, i.e. on CPU. ``seeded=True`` (the default)
  therefore refuses an engine without it; ``seeded=False`` samples without seeds (results then
  depend on the engine's global generator and on the batch). Greedy steps are batch-independent
  either way.
- returned logprobs are those of the temperature-scaled distribution unless the engine processes
  run with ``SGLANG_RETURN_ORIGINAL_LOGPROB=1``. At temperature 0 or 1 they are the raw ones; for
  other temperatures (and without that variable) the step tokens are re-scored in one more batched
  call (input logprobs; the prefix is a radix hit, so only the step's tokens are recomputed).

SGLang is imported lazily: importing this module does not require it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
from typing import Any, Callable, Mapping, Sequence

from ttc_plugins.search.engine import ExtendRequest, VerifyRequest
from ttc_plugins.search.engine_base import EngineOpsBase
from ttc_plugins.search.seeds import continuation_seed
from ttc_plugins.types import Step

__all__ = ["AsyncSGLangEngineOps", "SGLangEngineOps", "sampling_params"]

_dp_turns = itertools.count()  # the next served search's data-parallel rank, round-robin

ORIGINAL_LOGPROB_ENV = "SGLANG_RETURN_ORIGINAL_LOGPROB"


def sampling_params(req: ExtendRequest, index: int, *, seeded: bool) -> dict[str, Any]:
    """SGLang ``sampling_params`` of continuation ``index`` of ``req``: greedy at temperature 0,
    stop strings then the delimiter (kept in the output), and with ``seeded`` the continuation's
    ``sampling_seed`` (:func:`~ttc_plugins.search.seeds.continuation_seed`)."""
    s, until = req.sampling, req.until
    greedy = s.temperature <= 0
    stop = list(dict.fromkeys(x for x in (*until.stop, until.delimiter) if x))
    sp: dict[str, Any] = {
        "max_new_tokens": until.max_tokens, "temperature": 0.0 if greedy else float(s.temperature),
        "top_p": 1.0 if greedy else float(s.top_p), "no_stop_trim": True, "skip_special_tokens": True,
    }
    if stop:
        sp["stop"] = stop
    if seeded and not greedy:
        sp["sampling_seed"] = continuation_seed(s.seed, req.sampling_key, index)
    return sp


class SGLangEngineOps(EngineOpsBase):
    """EngineOps over an in-process ``sglang.Engine`` (see the module docstring).

    :param engine: the engine (``sgl.Engine(...)``), used by one caller at a time.
    :param embedder: texts -> L2-normalised vectors (default: ``HashingEmbedder()``).
    :param pm: plugin manager; ``ttc_kv_report`` is called after each continuation.
    :param seeded: pass per-continuation ``sampling_seed`` s (batch-independent sampling); needs an
        engine with ``enable_deterministic_inference=True`` (construction raises otherwise).
    :param add_bos: prepend the tokenizer's BOS in :meth:`encode` (as HFEngineOps does).
    :param kv_poll_s: how often the scheduler's KV usage is polled while a batch runs; ``None``
        turns polling off (``blocks_held`` / ``peak_blocks`` then stay 0).
    :param top_logprobs: k of the top-k read by :meth:`verify_prob`.
    :param reward_models: reward models served beside the engine, by name, for the ``prm`` scorer
        (e.g. ``{"prm": sglang_backend.reward_model.SGLangRewardModel(prm_engine)}``).
    """

    name = "sglang"

    def __init__(self, engine: Any, *, embedder: Callable[[Sequence[str]], list[list[float]]] | None = None,
                 pm: Any = None, seeded: bool = True, add_bos: bool = True, kv_poll_s: float | None = 0.005,
                 top_logprobs: int = 20, reward_models: Mapping[str, Any] | None = None):
        self.engine = engine
        args = getattr(engine, "server_args", None)
        if seeded and not getattr(args, "enable_deterministic_inference", False):
            raise ValueError(
                "SGLangEngineOps: seeded sampling needs sgl.Engine(enable_deterministic_inference=True) "
                "(SGLang ignores sampling_seed otherwise; sglang 0.5.23 refuses that flag with the "
                "torch_native attention backend, so on CPU pass seeded=False)")
        self.seeded = seeded
        self._init_base(engine.tokenizer_manager.tokenizer, embedder=embedder, pm=pm, add_bos=add_bos,
                        reward_models=reward_models)
        self.kv_poll_s = kv_poll_s
        self.routing: dict[str, int] = {}  # extra GenerateReqInput fields (a served search's DP rank)
        self.top_logprobs = max(1, int(top_logprobs))
        self.page_size = int(getattr(args, "page_size", None) or 1)
        self.raw_logprobs_always = os.environ.get(ORIGINAL_LOGPROB_ENV, "").strip().lower() in ("1", "true")
        self.engine_calls = 0
        self.rescored = 0
        self.kv_samples = 0
        self.peak_used_tokens = 0

    # -- EngineOps ------------------------------------------------------------------------------
    async def aextend(self, requests: Sequence[ExtendRequest]) -> list[list[Step]]:
        todo = self._continuations(requests)
        prompts = [ids for _, _, ids in todo]
        params = [sampling_params(requests[ri], i, seeded=self.seeded) for ri, i, _ in todo]
        owner = [ri for ri, _, _ in todo]
        outs = await self._arun(prompts, params, return_logprob=True)
        steps = [self._to_step(requests[ri], o) for ri, o in zip(owner, outs)]
        # logprobs of a temperature-scaled distribution: re-score the step tokens (one batch)
        redo = [j for j, ri in enumerate(owner)
                if not self._engine_logprobs_are_raw(requests[ri].sampling.temperature) and steps[j].token_ids]
        if redo:
            self.rescored += len(redo)
            vals = await self._aprompt_token_logprobs([prompts[j] + list(steps[j].token_ids) for j in redo],
                                                      [len(prompts[j]) for j in redo])
            for j, v in zip(redo, vals):
                steps[j] = Step(branch_id=steps[j].branch_id, text=steps[j].text, token_ids=steps[j].token_ids,
                                stop_reason=steps[j].stop_reason, logprob=v, tokens_reused=steps[j].tokens_reused)
        return self._account(requests, owner, prompts, steps)

    async def averify_prob(self, requests: Sequence[VerifyRequest]) -> list[float]:
        self.calls["verify_prob"] += 1
        if not requests:
            return []
        prompts = [self.encode(r.prompt) for r in requests]
        wanted = [(self._first_token(r.yes), None if r.no is None else self._first_token(r.no)) for r in requests]
        sp = {"max_new_tokens": 1, "temperature": 0.0}
        outs = await self._arun(prompts, [dict(sp) for _ in prompts], return_logprob=True,
                                top_logprobs_num=self.top_logprobs,
                                token_ids_logprob=[[t for t in dict.fromkeys(w) if t is not None] for w in wanted])
        res = []
        for prompt, (yes, no), o in zip(prompts, wanted, outs):
            meta = o["meta_info"]
            self._count_output(len(prompt), o)
            top = {int(t): float(lp) for lp, t, *_ in (meta.get("output_top_logprobs") or [[]])[0] or []}
            exact = {int(t): float(lp) for lp, t, *_ in (meta.get("output_token_ids_logprobs") or [[]])[0] or []}
            got = {t: top[t] if t in top else exact[t] for t in (yes, no) if t is not None}
            res.append(self._yes_probability(got[yes], None if no is None else got[no]))
        return res

    # -- engine ---------------------------------------------------------------------------------
    def run(self, coro: Any) -> Any:
        """A synchronous caller's coroutine runs on the engine's own loop (``sgl.Engine`` serves
        from it)."""
        return self.engine.loop.run_until_complete(coro)

    async def _arun(self, prompts: Sequence[Sequence[int]], params: Sequence[dict[str, Any]], **kw: Any) -> list[dict]:
        """One batched ``async_generate`` over every prompt, polling the scheduler's KV usage while
        it runs; returns one output dict per prompt, in order."""
        if not prompts:
            return []
        self.engine_calls += 1
        outs = await self._batch(prompts, params, **kw)
        outs = outs if isinstance(outs, list) else [outs]
        if len(outs) != len(prompts):
            raise RuntimeError(f"SGLangEngineOps: {len(outs)} outputs for {len(prompts)} prompts")
        return outs

    async def _batch(self, prompts: Sequence[Sequence[int]], params: Sequence[dict[str, Any]], **kw: Any) -> Any:
        task = asyncio.ensure_future(
            self.engine.async_generate(input_ids=[list(p) for p in prompts], sampling_params=list(params),
                                       **self.routing, **kw))
        try:
            if self.kv_poll_s is not None:
                while not task.done():
                    await self._sample_kv()
                    await asyncio.wait({task}, timeout=self.kv_poll_s)
            return await task
        except asyncio.CancelledError:  # the search's client went away: stop the batch too
            task.cancel()
            raise

    async def _sample_kv(self) -> None:
        loads = await self.engine.tokenizer_manager.get_loads()
        used = sum(int(getattr(s, "num_used_tokens", 0) or 0) for s in loads)
        self.kv_samples += 1
        self.peak_used_tokens = max(self.peak_used_tokens, used)
        held = -(-used // self.page_size)
        self._observe_blocks(held)

    def _engine_logprobs_are_raw(self, temperature: float) -> bool:
        return self.raw_logprobs_always or temperature <= 0 or temperature == 1.0

    async def _aprompt_token_logprobs(self, seqs: Sequence[Sequence[int]], starts: Sequence[int]) -> list[float]:
        """Summed input-token logprobs of ``seq[start:]`` for each sequence (one batch)."""
        sp = {"max_new_tokens": 1, "temperature": 0.0}
        outs = await self._arun(seqs, [dict(sp) for _ in seqs], return_logprob=True,
                                logprob_start_len=[s - 1 for s in starts])
        vals = []
        for seq, start, o in zip(seqs, starts, outs):
            self._count_output(len(seq), o)
            entries = o["meta_info"]["input_token_logprobs"]  # positions start - 1 .. len(seq) - 1
            tail = entries[len(entries) - (len(seq) - start):]
            if [int(t) for _, t, *_ in tail] != list(seq[start:]) or any(lp is None for lp, *_ in tail):
                raise RuntimeError("SGLangEngineOps: input logprobs do not line up with the scored tokens")
            vals.append(float(sum(lp for lp, *_ in tail)))
        return vals

    def _count_output(self, prompt_len: int, o: dict) -> None:
        meta = o["meta_info"]
        self._count_plain(prompt_len, int(meta.get("cached_tokens") or 0), int(meta.get("completion_tokens") or 0))

    def _to_step(self, req: ExtendRequest, o: dict) -> Step:
        meta = o["meta_info"]
        lps = meta.get("output_token_logprobs") or []
        ids = o.get("output_ids")
        tokens = tuple(int(t) for t in (ids if ids is not None else [t for _, t, *_ in lps]))
        logprob = float(sum(lp for lp, *_ in lps if lp is not None))
        fin = meta.get("finish_reason") or {}
        reason = self._stop_reason(req, fin.get("type"), fin.get("matched"))
        text = self.tokenizer.decode(list(tokens), skip_special_tokens=True)
        return Step(branch_id=req.branch.id, text=text, token_ids=tokens, stop_reason=reason, logprob=logprob,
                    tokens_reused=int(meta.get("cached_tokens") or 0))


class _ServedEngine:
    """The part of ``sglang.Engine`` that :class:`SGLangEngineOps` uses, over a server's
    ``TokenizerManager`` (what ``Engine.async_generate`` does, minus the engine)."""

    def __init__(self, tokenizer_manager: Any):
        self.tokenizer_manager = tokenizer_manager
        self.server_args = tokenizer_manager.server_args

    async def async_generate(self, **kw: Any) -> Any:
        from sglang.srt.managers.io_struct import GenerateReqInput

        return await self.tokenizer_manager.generate_request(GenerateReqInput(**kw), None).__anext__()


class AsyncSGLangEngineOps(SGLangEngineOps):
    """The same operations inside SGLang's HTTP server (``python -m sglang.launch_server``), for
    :func:`ttc_plugins.search.driver.arun_search` on the server's loop: every batch is one
    ``GenerateReqInput`` with one entry per continuation, handed to the ``TokenizerManager``, so the
    scheduler batches it with whatever else the server serves and the radix cache shares prefixes
    across all of them. No HTTP hop per round.

    :param tokenizer_manager: the server's ``TokenizerManager``.
    :param seeded: per-continuation seeds; default: whether the server runs with
        ``--enable-deterministic-inference`` (SGLang ignores seeds otherwise; not available on CPU).
    :param embedder, pm, add_bos, kv_poll_s, reward_models: as for :class:`SGLangEngineOps`.
    """

    name = "sglang-server"

    def __init__(self, tokenizer_manager: Any, *, seeded: bool | None = None,
                 embedder: Callable[[Sequence[str]], list[list[float]]] | None = None, pm: Any = None,
                 add_bos: bool = True, kv_poll_s: float | None = 0.005, reward_models: Mapping[str, Any] | None = None):
        engine = _ServedEngine(tokenizer_manager)
        if seeded is None:
            seeded = bool(getattr(engine.server_args, "enable_deterministic_inference", False))
        super().__init__(engine, embedder=embedder, pm=pm, seeded=seeded, add_bos=add_bos, kv_poll_s=kv_poll_s,
                         reward_models=reward_models)
        self._pin_dp_rank(int(getattr(engine.server_args, "dp_size", 1) or 1))

    def _pin_dp_rank(self, dp_size: int) -> None:
        """Data parallelism (``--dp`` > 1: one scheduler and radix cache per rank): every round of
        this search goes to one rank, so each child finds its parent's tokens in that rank's radix
        cache (the DP controller would otherwise spread the rounds); searches take ranks in turn."""
        if dp_size > 1:
            self.routing = {_dp_rank_field(): next(_dp_turns) % dp_size}

    def run(self, coro: Any) -> Any:
        coro.close()
        raise RuntimeError("AsyncSGLangEngineOps runs on the server's event loop: await its coroutines "
                           "(arun_search, aextend, ...) there")


def _dp_rank_field() -> str:
    """``GenerateReqInput``'s field naming the DP rank a request goes to (older releases: the
    deprecated ``data_parallel_rank``)."""
    from sglang.srt.managers.io_struct import GenerateReqInput

    fields = {f.name for f in dataclasses.fields(GenerateReqInput)}
    return "routed_dp_rank" if "routed_dp_rank" in fields else "data_parallel_rank"
