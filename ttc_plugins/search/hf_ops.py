"""``HFEngineOps``: :class:`~.engine.EngineOps` over a Hugging Face transformers causal LM in this
process, run step by step on CPU (or any torch device). It is the engine behind
``ttc run --engine hf`` / ``ttc bench --engine hf`` where no serving engine is installed, and the
reference the engine backends are checked against (their search tests compare with it).

- ``extend``: continuation ``i`` samples with a generator seeded by
  :func:`~.seeds.continuation_seed` (sampling seed, branch's ``sampling_key``, ``i``), so results do
  not depend on batch composition; greedy at temperature 0; stops at the step delimiter, a stop
  string, EOS or the token limit. The sequences of one batched call run one after another (a
  reference, not a fast path).
- a token-prefix KV cache: every finished continuation leaves its KV behind (LRU, ``cache_entries``);
  a new request reuses the longest cached prefix (copied, then cropped), so ``tokens_reused`` and
  ``kv_stats`` count real reuse;
- ``score_logprobs``, ``verify_prob`` (self-evaluation), ``embed`` through a pluggable embedder
  (default :class:`~ttc_plugins.embedding.HashingEmbedder`).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

from ..embedding import HashingEmbedder
from ..types import KVStats, RequestContext, Step
from .engine import SyncEngineOps, yes_probability
from .seeds import continuation_seed

__all__ = ["HFEngineOps"]


class HFEngineOps(SyncEngineOps):
    """EngineOps over a transformers causal LM (see the module docstring)."""

    #: ``RequestContext.engine`` of its requests (the in-process reference engine's name).
    name = "memory"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        embedder: Callable[[Sequence[str]], list[list[float]]] | None = None,
        pm: Any = None,
        block_size: int = 16,
        cache_entries: int = 256,
        add_bos: bool = True,
        reward_models: dict[str, Any] | None = None,
    ):
        import torch

        self.reward_models = dict(reward_models or {})  # for the ``prm`` scorer
        self.torch = torch
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.embedder = embedder or HashingEmbedder()
        self.pm = pm
        self.block_size = block_size
        self.cache_entries = cache_entries
        self.add_bos = add_bos
        self.eos_ids = self._eos_ids()
        self._cache: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self.stats = KVStats()
        self.calls = {"extend": 0, "score_logprobs": 0, "verify_prob": 0, "embed": 0}
        self.sequences = 0

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: str = "float32", **kw: Any) -> "HFEngineOps":
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=getattr(torch, dtype))
        return cls(model, tok, **kw)

    def _eos_ids(self) -> set[int]:
        ids = set()
        for src in (getattr(self.model.config, "eos_token_id", None), self.tokenizer.eos_token_id):
            if isinstance(src, int):
                ids.add(src)
            elif isinstance(src, (list, tuple)):
                ids.update(int(x) for x in src)
        return ids

    # -- EngineOps ------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        if self.add_bos and bos is not None and (not ids or ids[0] != bos):
            ids = [bos] + ids
        return list(ids)

    def extend(self, requests: Sequence[Any]) -> list[list[Step]]:
        self.calls["extend"] += 1
        out = []
        for req in requests:
            steps = []
            for i in range(req.n):
                seed = continuation_seed(req.sampling.seed, req.sampling_key, i)
                step = self._continue(req.branch.id, req.branch.all_token_ids, req.until, req.sampling, seed)
                steps.append(step)
                if self.pm is not None:
                    ctx: RequestContext = req.ctx
                    self.pm.hook.ttc_kv_report(
                        ctx=ctx,
                        stats=KVStats(tokens_computed=len(req.branch.all_token_ids) - step.tokens_reused + len(step.token_ids),
                                      tokens_reused=step.tokens_reused, blocks_held=self._blocks_held(),
                                      peak_blocks=self.stats.peak_blocks),
                    )
            out.append(steps)
        return out

    def score_logprobs(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[float]:
        self.calls["score_logprobs"] += 1
        torch = self.torch
        out = []
        for context, cont in pairs:
            if not cont:
                out.append(0.0)
                continue
            ids = list(context) + list(cont)
            start, cache = self._lookup(list(context))  # reuse at most the context (minus one)
            self.stats.tokens_reused += start
            logits, _, start = self._forward(ids[:-1], reuse_ok=False, cache=cache, start=start)
            lp = torch.log_softmax(logits.float(), dim=-1)  # rows: positions start .. len(ids) - 2
            first = len(context) - 1 - start  # the row predicting cont[0]
            out.append(float(sum(lp[first + j, t] for j, t in enumerate(cont))))
        return out

    def verify_prob(self, requests: Sequence[Any]) -> list[float]:
        self.calls["verify_prob"] += 1
        torch = self.torch
        out = []
        for req in requests:
            logits, _, _ = self._forward(self.encode(req.prompt), reuse_ok=True)
            probs = torch.softmax(logits[-1].float(), dim=-1)
            p_no = None if req.no is None else float(probs[self._first_token(req.no)])
            out.append(yes_probability(float(probs[self._first_token(req.yes)]), p_no))
        return out

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls["embed"] += 1
        return self.embedder(list(texts))

    def kv_stats(self) -> KVStats:
        return KVStats(tokens_computed=self.stats.tokens_computed, tokens_reused=self.stats.tokens_reused,
                       blocks_held=self._blocks_held(), peak_blocks=self.stats.peak_blocks)

    # -- internals ------------------------------------------------------------------------------
    def _first_token(self, text: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"{text!r} encodes to no token")
        return ids[0]

    def _blocks_held(self) -> int:
        return sum(-(-len(k) // self.block_size) for k in self._cache)

    def _lookup(self, ids: Sequence[int]) -> tuple[int, Any]:
        """Longest cached prefix of ``ids`` (at most len(ids) - 1 tokens, so one is computed)."""
        best_len, best_key = 0, None
        limit = len(ids) - 1
        for key in self._cache:
            n = 0
            m = min(len(key), limit)
            while n < m and key[n] == ids[n]:
                n += 1
            if n > best_len:
                best_len, best_key = n, key
        if best_key is None:
            return 0, None
        self._cache.move_to_end(best_key)
        cache = copy.deepcopy(self._cache[best_key])
        if best_len < len(best_key):
            cache.crop(best_len - len(best_key))  # negative: drop that many trailing tokens
        return best_len, cache

    def _store(self, ids: tuple[int, ...], cache: Any) -> None:
        if not ids:
            return
        self._cache[ids] = cache
        self._cache.move_to_end(ids)
        while len(self._cache) > self.cache_entries:
            self._cache.popitem(last=False)
        self.stats.peak_blocks = max(self.stats.peak_blocks, self._blocks_held())

    def _forward(self, ids: Sequence[int], *, reuse_ok: bool, cache: Any = None, start: int = 0):
        """Run ``ids[start:]`` after ``cache`` (with ``reuse_ok``: after the longest cached prefix);
        returns (logits of the positions run, cache, index of the first position run)."""
        torch = self.torch
        from transformers import DynamicCache

        if cache is None and reuse_ok:
            start, cache = self._lookup(ids)
            self.stats.tokens_reused += start
        if cache is None:
            cache = DynamicCache()
        x = torch.tensor([list(ids[start:])], device=self.device)
        with torch.no_grad():
            res = self.model(input_ids=x, past_key_values=cache, use_cache=True)
        self.stats.tokens_computed += x.shape[1]
        return res.logits[0], res.past_key_values, start

    def _sample(self, logits, sampling, gen) -> int:
        torch = self.torch
        if sampling.temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
        if sampling.top_p < 1.0:
            sorted_p, idx = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_p, 0) - sorted_p < sampling.top_p
            mask = torch.zeros_like(probs, dtype=torch.bool)
            mask[idx[keep]] = True
            probs = torch.where(mask, probs, torch.zeros_like(probs))
            probs = probs / probs.sum()
        return int(torch.multinomial(probs, 1, generator=gen))

    def _continue(self, branch_id: str, prompt: Sequence[int], until, sampling, seed: int) -> Step:
        torch = self.torch
        self.sequences += 1
        gen = torch.Generator(device="cpu").manual_seed(seed)
        reused, cache = self._lookup(prompt)
        self.stats.tokens_reused += reused
        logits, cache, _ = self._forward(prompt, reuse_ok=False, cache=cache, start=reused)
        last = logits[-1]
        new: list[int] = []
        logprob = 0.0
        reason = "length"
        for _ in range(until.max_tokens):
            tok = self._sample(last, sampling, gen)
            logprob += float(torch.log_softmax(last.float(), dim=-1)[tok])
            new.append(tok)
            if tok in self.eos_ids:
                reason = "eos"
                break
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            if any(s in text for s in until.stop):
                reason = "stop"
                break
            if until.delimiter and until.delimiter in text:
                reason = "delimiter"
                break
            if len(new) == until.max_tokens:
                break
            logits, cache, _ = self._forward([tok], reuse_ok=False, cache=cache)
            last = logits[-1]
        # the cache now holds prompt + new[:-1] (the last token was sampled, not fed)
        self._store(tuple(prompt) + tuple(new[:-1]), cache)
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return Step(branch_id=branch_id, text=text, token_ids=tuple(new), stop_reason=reason, logprob=logprob,
                    tokens_reused=reused)
