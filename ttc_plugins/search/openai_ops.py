""":class:`~.engine.EngineOps` over an OpenAI-compatible HTTP server: the search loop runs in the
client and every engine call is an HTTP request, the way peers (its_hub, search-and-learn over an
API) drive search. It exists to measure what running the search inside the engine saves
(``benchmarks/bench_search_http.py``) and to drive a server the plugin is not installed in.

Semantics are those of the in-process backends (vLLM's
:class:`~ttc_plugins.vllm_backend.search_ops.VLLMEngineOps`): one ``/v1/completions`` request per
continuation, all of a batch sent concurrently (the server batches them), prompts as token ids,
continuation ``i`` seeded with ``continuation_seed(seed, sampling_key, i)``, stop at the first
stop string / delimiter (kept in the text), EOS or ``max_tokens``; ``Step.text`` decoded from the
step's tokens. It relies on vLLM's extensions of the completions API: ``return_tokens_as_token_ids``
(exact token ids back), ``include_stop_str_in_output``, ``stop_reason`` and ``prompt_logprobs``.
``tokens_reused`` comes from ``usage.prompt_tokens_details.cached_tokens`` (start the server with
``--enable-prompt-tokens-details``; otherwise it is 0). KV blocks are not visible over HTTP:
``kv_stats`` reports tokens only.

The standard library does the HTTP (no extra dependency); a thread per in-flight request.
"""

from __future__ import annotations

import concurrent.futures
import json
import urllib.error
import urllib.request
from typing import Any, Callable, Sequence

from ..types import Step
from .engine import ExtendRequest, VerifyRequest
from .seeds import continuation_seed
from .engine_base import EngineOpsBase

__all__ = ["OpenAIEngineOps", "OpenAIServerError"]

TOKEN_PREFIX = "token_id:"  # how vLLM spells tokens with return_tokens_as_token_ids


class OpenAIServerError(RuntimeError):
    """The server answered an error (the message carries its status and body)."""


class OpenAIEngineOps(EngineOpsBase):
    """EngineOps over ``base_url`` (e.g. ``http://127.0.0.1:8000``) serving ``model``.

    :param tokenizer: the served model's tokenizer (a ``transformers`` tokenizer): prompts are
        sent as token ids and steps decoded locally, so branches keep exact tokens.
    :param seeded: send per-continuation seeds (batch-independent sampling).
    :param max_workers: requests in flight at once.
    """

    name = "openai-http"

    def __init__(self, base_url: str, model: str, tokenizer: Any, *,
                 embedder: Callable[[Sequence[str]], list[list[float]]] | None = None, pm: Any = None,
                 seeded: bool = True, add_bos: bool = True, max_workers: int = 64, timeout_s: float = 600.0):
        self._init_base(tokenizer, embedder=embedder, pm=pm, add_bos=add_bos)
        self.url = base_url.rstrip("/") + "/v1/completions"
        self.model = model
        self.seeded = seeded
        self.timeout_s = timeout_s
        self.http_requests = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ttc-http")

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    # -- EngineOps ------------------------------------------------------------------------------
    async def aextend(self, requests: Sequence[ExtendRequest]) -> list[list[Step]]:
        todo = self._continuations(requests)
        bodies = []
        for ri, i, ids in todo:
            req = requests[ri]
            s, until = req.sampling, req.until
            greedy = s.temperature <= 0
            body = {
                "prompt": ids, "max_tokens": until.max_tokens, "temperature": 0.0 if greedy else s.temperature,
                "top_p": 1.0 if greedy else s.top_p,
                "stop": list(dict.fromkeys(x for x in (*until.stop, until.delimiter) if x)),
                "include_stop_str_in_output": True, "logprobs": 0, "return_tokens_as_token_ids": True,
                "skip_special_tokens": True,
            }
            if self.seeded and not greedy:
                body["seed"] = continuation_seed(s.seed, req.sampling_key, i)
            bodies.append(body)
        answers = self._post_all(bodies)
        steps = [self._to_step(requests[ri], a) for (ri, _, _), a in zip(todo, answers)]
        return self._account(requests, [ri for ri, _, _ in todo], [ids for _, _, ids in todo], steps)

    async def averify_prob(self, requests: Sequence[VerifyRequest]) -> list[float]:
        self.calls["verify_prob"] += 1
        if not requests:
            return []
        prompts = [self.encode(r.prompt) for r in requests]
        answers = self._post_all([{"prompt": p, "max_tokens": 1, "temperature": 0.0, "logprobs": 20,
                                   "return_tokens_as_token_ids": True} for p in prompts])
        tops = []
        for p, a in zip(prompts, answers):
            self._count_answer(len(p), a)
            top = (a["choices"][0].get("logprobs") or {}).get("top_logprobs") or [{}]
            tops.append({_token_id(t): float(lp) for t, lp in (top[0] or {}).items()})
        return await self._averify_from_top(requests, prompts, tops)

    # -- shared pieces ----------------------------------------------------------------------------
    async def _aprompt_token_logprobs(self, seqs: Sequence[Sequence[int]], starts: Sequence[int]) -> list[float]:
        answers = self._post_all([{"prompt": list(s), "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
                                  for s in seqs])
        out = []
        for seq, start, a in zip(seqs, starts, answers):
            self._count_answer(len(seq), a)
            plp = a["choices"][0].get("prompt_logprobs")
            if plp is None:
                raise OpenAIServerError("the server returned no prompt_logprobs (needs vLLM's completions API)")
            out.append(float(sum(plp[j][str(seq[j])]["logprob"] for j in range(start, len(seq)))))
        return out

    def _to_step(self, req: ExtendRequest, answer: dict[str, Any]) -> Step:
        choice = answer["choices"][0]
        lp = choice.get("logprobs") or {}
        tokens = tuple(_token_id(t) for t in lp.get("tokens") or ())
        logprob = float(sum(x for x in lp.get("token_logprobs") or () if x is not None))
        reason = self._stop_reason(req, choice.get("finish_reason"), choice.get("stop_reason"))
        return Step(branch_id=req.branch.id, text=self.tokenizer.decode(list(tokens), skip_special_tokens=True),
                    token_ids=tokens, stop_reason=reason, logprob=logprob, tokens_reused=_cached_tokens(answer))

    def _count_answer(self, prompt_len: int, answer: dict[str, Any]) -> None:
        usage = answer.get("usage") or {}
        self._count_plain(prompt_len, _cached_tokens(answer), int(usage.get("completion_tokens") or 0))

    # -- HTTP -------------------------------------------------------------------------------------
    def _post_all(self, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(self._pool.map(self._post, bodies))

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps({"model": self.model, **body}).encode()
        req = urllib.request.Request(self.url, data=data, headers={"Content-Type": "application/json"})
        self.http_requests += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise OpenAIServerError(f"{self.url}: HTTP {exc.code}: {exc.read().decode(errors='replace')[:500]}") from None


def _token_id(token: str) -> int:
    if not token.startswith(TOKEN_PREFIX):
        raise OpenAIServerError(f"token {token!r} is not {TOKEN_PREFIX}<id>: the server ignored "
                                "return_tokens_as_token_ids (vLLM's completions API is required)")
    return int(token[len(TOKEN_PREFIX):])


def _cached_tokens(answer: dict[str, Any]) -> int:
    details = (answer.get("usage") or {}).get("prompt_tokens_details") or {}
    return int(details.get("cached_tokens") or 0)
