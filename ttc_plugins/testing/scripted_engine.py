"""A scripted :class:`~ttc_plugins.search.engine.EngineOps`: a test double of the *environment*.

The "model" is a fixed tree of steps: ``world(path_text) -> [(step_text, prob), ...]`` lists the
possible next steps after the generated text ``path_text`` (``[]`` or ``None``: the model emits
EOS). Continuations are drawn from those probabilities (tempered by the sampling temperature; greedy
at 0) with a generator seeded like :class:`~ttc_plugins.testing.memory_engine.MemoryEngine`, so a
strategy test can require that a specific low-probability continuation be found. Tokens are
whitespace-separated words (ids from a growing vocabulary); a prefix set stands in for the prefix
cache, so ``tokens_reused`` is counted the way a prefix-caching engine would.
"""

from __future__ import annotations

import math
import random
import re
from typing import Callable, Mapping, Sequence

from ..types import KVStats, Step
from ..embedding.hashing import HashingEmbedder
from ..search.engine import SyncEngineOps
from ..search.seeds import continuation_seed

World = Callable[[str], "Sequence[tuple[str, float]] | None"]


def tree_world(tree: Mapping[str, Sequence[tuple[str, float]]]) -> World:
    """A world from a dict keyed by the generated text so far."""
    return lambda path: tree.get(path)


class ScriptedEngine(SyncEngineOps):
    name = "scripted"

    def __init__(self, world: World | Mapping[str, Sequence[tuple[str, float]]], *,
                 verifier: Callable[[str], float] | None = None, block_size: int = 4):
        self.world = tree_world(world) if isinstance(world, Mapping) else world
        self.verifier = verifier
        self.block_size = block_size
        self.embedder = HashingEmbedder()
        self.vocab: dict[str, int] = {"<eos>": 0}
        self.words: list[str] = ["<eos>"]
        self._prompts: dict[tuple[int, ...], int] = {}  # token prefix -> prompt length (for path text)
        self._seen: set[tuple[int, ...]] = set()
        self.stats = KVStats()
        self.calls = {"extend": 0, "score_logprobs": 0, "verify_prob": 0, "embed": 0}
        self.extend_sizes: list[int] = []

    # -- tokens ---------------------------------------------------------------------------------
    def _tok(self, text: str) -> list[int]:
        out = []
        for piece in re.findall(r"\s*\S+|\s+", text):
            if piece not in self.vocab:
                self.vocab[piece] = len(self.words)
                self.words.append(piece)
            out.append(self.vocab[piece])
        return out

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.words[i] for i in ids if i != 0)

    def encode(self, text: str) -> list[int]:
        ids = self._tok(text)
        self._prompts[tuple(ids)] = len(ids)
        return ids

    def _path_text(self, ids: Sequence[int]) -> str:
        for n in range(len(ids), -1, -1):
            if tuple(ids[:n]) in self._prompts:
                return self.decode(ids[n:])
        raise KeyError("branch does not start with an encoded prompt")

    # -- EngineOps ------------------------------------------------------------------------------
    def extend(self, requests) -> list[list[Step]]:
        self.calls["extend"] += 1
        self.extend_sizes.append(sum(r.n for r in requests))
        out = []
        for req in requests:
            ids = req.branch.all_token_ids
            options = list(self.world(self._path_text(ids)) or [])
            steps = []
            for i in range(req.n):
                reused = max((n for n in range(len(ids)) if tuple(ids[:n]) in self._seen), default=0)
                if not options:
                    text, new, reason, lp = "", [0], "eos", 0.0
                else:
                    rng = random.Random(continuation_seed(req.sampling.seed, req.sampling_key, i))
                    probs = [p for _, p in options]
                    if req.sampling.temperature <= 0:
                        k = max(range(len(options)), key=lambda j: (probs[j], -j))
                    else:
                        w = [p ** (1.0 / req.sampling.temperature) for p in probs]
                        k = rng.choices(range(len(options)), weights=w)[0]
                    text = options[k][0]
                    new = self._tok(text)[: req.until.max_tokens]
                    text = self.decode(new)
                    lp = math.log(probs[k] / sum(probs))
                    reason = "delimiter"
                    if any(s in text for s in req.until.stop):
                        reason = "stop"
                    elif req.until.delimiter not in text and len(self._tok(options[k][0])) > req.until.max_tokens:
                        reason = "length"
                full = tuple(ids) + tuple(new)
                for n in range(len(full)):
                    self._seen.add(full[:n])
                self.stats.tokens_reused += reused
                self.stats.tokens_computed += len(ids) - reused + len(new)
                self.stats.peak_blocks = max(self.stats.peak_blocks, -(-len(self._seen) // self.block_size))
                steps.append(Step(branch_id=req.branch.id, text=text, token_ids=tuple(new), stop_reason=reason,
                                  logprob=lp, tokens_reused=reused))
            out.append(steps)
        return out

    def score_logprobs(self, pairs) -> list[float]:
        """Log-probability of a continuation made of whole scripted steps (-inf otherwise)."""
        self.calls["score_logprobs"] += 1
        out = []
        for context, cont in pairs:
            path, rest, total = self._path_text(context), self.decode(cont), 0.0
            while rest:
                options = list(self.world(path) or [])
                z = sum(p for _, p in options)
                match = next(((t, p) for t, p in options if rest.startswith(t)), None)
                if match is None:
                    total = -math.inf
                    break
                total += math.log(match[1] / z)
                path, rest = path + match[0], rest[len(match[0]):]
            out.append(total)
        return out

    def verify_prob(self, requests) -> list[float]:
        self.calls["verify_prob"] += 1
        if self.verifier is None:
            raise RuntimeError("this ScriptedEngine was built without a verifier")
        return [float(self.verifier(r.prompt)) for r in requests]

    def embed(self, texts) -> list[list[float]]:
        self.calls["embed"] += 1
        return self.embedder(list(texts))

    def kv_stats(self) -> KVStats:
        held = -(-len(self._seen) // self.block_size)
        return KVStats(tokens_computed=self.stats.tokens_computed, tokens_reused=self.stats.tokens_reused,
                       blocks_held=held, peak_blocks=self.stats.peak_blocks)
