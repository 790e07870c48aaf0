"""What every engine-backed :class:`~.engine.EngineOps` shares, so a backend writes only its
engine calls: tokenization, embedding, request validation, KV accounting (and the
``ttc_kv_report`` hook), the ``ascore_logprobs`` scaffold, the yes/no arithmetic of
``averify_prob``, and the synchronous API as thin wrappers over the coroutines.

A backend implements the coroutines ``aextend``, ``averify_prob`` and
``_aprompt_token_logprobs(seqs, starts)``; where its engine lives on a particular event loop it
also overrides :meth:`EngineOpsBase.run`."""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Coroutine, Mapping, Sequence, TypeVar

from ..types import KVStats, RequestContext, Step
from .engine import ExtendRequest, VerifyRequest, run_on_private_loop, yes_probability

T = TypeVar("T")


class EngineOpsBase:
    """Subclasses call :meth:`_init_base` and implement ``aextend``, ``averify_prob`` and
    ``_aprompt_token_logprobs(seqs, starts)`` (summed logprobs of ``seq[start:]`` per sequence)."""

    def _init_base(self, tokenizer: Any, *, embedder: Callable[[Sequence[str]], list[list[float]]] | None,
                   pm: Any, add_bos: bool, reward_models: Mapping[str, Any] | None = None) -> None:
        from ..embedding.hashing import HashingEmbedder

        #: Reward models served beside this engine, by name (the ``prm`` scorer's ``model``).
        self.reward_models = dict(reward_models or {})
        self.tokenizer = tokenizer
        self.embedder = embedder or HashingEmbedder()
        self.pm = pm
        self.add_bos = add_bos
        self.stats = KVStats()
        self._blocks_since: float | None = None  # when blocks_held was last read from the engine
        self.calls = {"extend": 0, "score_logprobs": 0, "verify_prob": 0, "embed": 0}
        self.sequences = 0

    # -- EngineOps ------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        bos = getattr(self.tokenizer, "bos_token_id", None)
        if self.add_bos and bos is not None and (not ids or ids[0] != bos):
            ids = [bos] + ids
        return ids

    async def ascore_logprobs(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[float]:
        self.calls["score_logprobs"] += 1
        todo = [(i, list(c), list(x)) for i, (c, x) in enumerate(pairs) if len(x) > 0]
        for _, context, _ in todo:
            if not context:
                raise ValueError("score_logprobs needs a non-empty context (the first token has no logprob)")
        out = [0.0] * len(pairs)
        if todo:
            values = await self._aprompt_token_logprobs([c + x for _, c, x in todo], [len(c) for _, c, _ in todo])
            for (i, _, _), v in zip(todo, values):
                out[i] = v
        return out

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls["embed"] += 1
        return self.embedder(list(texts))

    # -- the synchronous API: the coroutines, run to completion --------------------------------
    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one of this object's coroutines for a synchronous caller (default: on a private
        loop; an engine bound to a loop of its own overrides this)."""
        return run_on_private_loop(self, coro)

    def extend(self, requests: Sequence[ExtendRequest]) -> list[list[Step]]:
        return self.run(self.aextend(requests))

    def score_logprobs(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[float]:
        return self.run(self.ascore_logprobs(pairs))

    def verify_prob(self, requests: Sequence[VerifyRequest]) -> list[float]:
        return self.run(self.averify_prob(requests))

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.run(self.aembed(texts))

    def kv_stats(self) -> KVStats:
        self._observe_blocks(self.stats.blocks_held, sampled=False)  # held until now
        return KVStats(tokens_computed=self.stats.tokens_computed, tokens_reused=self.stats.tokens_reused,
                       blocks_held=self.stats.blocks_held, peak_blocks=self.stats.peak_blocks,
                       block_seconds=self.stats.block_seconds)

    def _observe_blocks(self, held: int, *, sampled: bool = True) -> None:
        """A reading of the engine's blocks in use: updates held / peak and integrates the
        previous reading over the time since (the gauge is read after every engine step; between
        rounds, while the search scores and plans, what the engine holds is the last reading)."""
        now = time.perf_counter()
        if self._blocks_since is not None:
            self.stats.block_seconds += self.stats.blocks_held * (now - self._blocks_since)
        if sampled or self._blocks_since is not None:
            self._blocks_since = now
        self.stats.blocks_held = held
        self.stats.peak_blocks = max(self.stats.peak_blocks, held)

    # -- shared pieces ----------------------------------------------------------------------------
    async def aextend(self, requests: Sequence[ExtendRequest]) -> list[list[Step]]:
        raise NotImplementedError

    async def averify_prob(self, requests: Sequence[VerifyRequest]) -> list[float]:
        raise NotImplementedError

    async def _aprompt_token_logprobs(self, seqs: Sequence[Sequence[int]], starts: Sequence[int]) -> list[float]:
        raise NotImplementedError

    def _continuations(self, requests: Sequence[ExtendRequest]) -> list[tuple[int, int, list[int]]]:
        """``(request index, continuation index, prompt ids)`` for every continuation asked for."""
        self.calls["extend"] += 1
        out = []
        for ri, req in enumerate(requests):
            if req.n < 1:
                raise ValueError(f"ExtendRequest.n must be >= 1, got {req.n}")
            ids = list(req.branch.all_token_ids)
            if not ids:
                raise ValueError(f"branch {req.branch.id!r} has no tokens to continue from")
            out += [(ri, i, ids) for i in range(req.n)]
        return out

    def _account(self, requests: Sequence[ExtendRequest], owners: Sequence[int],
                 prompts: Sequence[Sequence[int]], steps: Sequence[Step]) -> list[list[Step]]:
        """Group steps by request, count tokens computed vs reused, report each continuation."""
        out: list[list[Step]] = [[] for _ in requests]
        for ri, prompt, step in zip(owners, prompts, steps):
            out[ri].append(step)
            computed = len(prompt) - step.tokens_reused + len(step.token_ids)
            self.stats.tokens_computed += computed
            self.stats.tokens_reused += step.tokens_reused
            self.sequences += 1
            if self.pm is not None:
                ctx: RequestContext = requests[ri].ctx
                self.pm.hook.ttc_kv_report(
                    ctx=ctx, stats=KVStats(tokens_computed=computed, tokens_reused=step.tokens_reused,
                                           blocks_held=self.stats.blocks_held, peak_blocks=self.stats.peak_blocks))
        return out

    def _count_plain(self, prompt_len: int, reused: int, generated: int) -> None:
        """Account an engine call that is not a search step (verification, scoring)."""
        self.stats.tokens_reused += reused
        self.stats.tokens_computed += prompt_len - reused + generated
        self.sequences += 1

    async def _averify_from_top(self, requests: Sequence[VerifyRequest], prompts: Sequence[Sequence[int]],
                                tops: Sequence[dict[int, float]]) -> list[float]:
        """``verify_prob`` from each prompt's top next-token logprobs; a yes/no token outside the
        top-k is scored exactly with ``prompt_logprobs`` of ``prompt + [token]``."""
        wanted = [(self._first_token(r.yes), None if r.no is None else self._first_token(r.no)) for r in requests]
        found = [{t: top[t] for t in toks if t is not None and t in top} for toks, top in zip(wanted, tops)]
        missing = [(ri, t) for ri, (toks, got) in enumerate(zip(wanted, found))
                   for t in dict.fromkeys(toks) if t is not None and t not in got]
        if missing:
            vals = await self._aprompt_token_logprobs([list(prompts[ri]) + [t] for ri, t in missing],
                                                      [len(prompts[ri]) for ri, _ in missing])
            for (ri, t), v in zip(missing, vals):
                found[ri][t] = v
        return [self._yes_probability(got[yes], None if no is None else got[no])
                for (yes, no), got in zip(wanted, found)]

    def _stop_reason(self, req: ExtendRequest, finish: Any, matched: Any) -> str:
        """A step's stop reason from the engine's finish kind (``"length"`` / ``"stop"``) and what
        matched: a stop string (``"stop"`` if it is one of the request's, else the delimiter) or
        a token id / nothing (EOS, or one of the model's extra EOS ids)."""
        if finish == "length":
            return "length"
        if finish == "stop":
            if isinstance(matched, str):
                return "stop" if matched in req.until.stop else "delimiter"
            return "eos"
        raise RuntimeError(f"{self.name}: the request for branch {req.branch.id!r} ended with {finish!r}")

    def _first_token(self, text: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"{text!r} encodes to no token")
        return int(ids[0])

    @staticmethod
    def _yes_probability(logprob_yes: float, logprob_no: float | None) -> float:
        """:func:`~.engine.yes_probability` from log-probabilities."""
        return yes_probability(math.exp(logprob_yes), None if logprob_no is None else math.exp(logprob_no))
