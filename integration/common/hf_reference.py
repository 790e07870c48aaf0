"""Engine-independent reference: HF transformers on the same weights, float32, greedy, with the
same ``ttc`` request semantics applied independently of any engine code path.

- ``control`` (steering): a forward hook on each listed decoder layer rewrites the layer's output
  (the residual stream) with the math of ``ttc_plugins/controls/steering.py``, written out here
  again on purpose (add: h + s·v; project: h − (h·v̂)v̂ + s·v̂; preserve_norm: rescale to the
  pre-steering norm), so a bug in the engine path or the kernel cannot hide in the reference.
- ``control`` (ttc_layer): a forward hook adds ``scale`` times the TTC adapter's output, with the
  first control u0 solved by the float64 Riccati reference (not the fast op the engines call).
- ``decoding``: the registered decoders (force_token, ban_tokens) edit the logits before argmax.

Logprobs are those of the chosen token under the raw (unprocessed) logits, which is what vLLM
(``logprobs_mode=raw_logprobs``) and SGLang return.

Interface (what every engine's suite uses)::

    ref = HFReference(model_dir)
    ref.generate(prompts: list[list[int]], ttcs: list[dict | None], max_tokens: int,
                 vectors: dict[str, str] | None = None) -> list[tuple[list[int], list[float]]]
    ref.cached(vectors=..., ttc_layers=...)  -> the same as a memoised run(prompts, ttcs, max_tokens)
    ref.beam_search(prompt, width, max_tokens, eos_token_id, length_penalty=1.0, early_stopping=False,
                    stop_token_ids=(), stop=()) -> list[(token_ids, cumulative_logprob, score)]

``beam_search`` is a plain HF-style token beam search, written out here on its own (full forward
per beam per step, no KV cache, no engine code) with the rules stated in ``ttc_plugins.token_beam``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

Result = tuple[list[int], list[float]]


def _steer(h: torch.Tensor, v: torch.Tensor, scale: float, mode: str, preserve_norm: bool) -> torch.Tensor:
    h32 = h.float()
    v32 = v.to(h32)
    if mode == "add":
        out = h32 + scale * v32
    elif mode == "project":
        unit = v32 / v32.norm()
        out = h32 - (h32 @ unit).unsqueeze(-1) * unit + scale * unit
    else:
        raise ValueError(f"unknown steering mode {mode!r}")
    if preserve_norm:
        out = out * (h32.norm(dim=-1, keepdim=True) / out.norm(dim=-1, keepdim=True))
    return out.to(h.dtype)


def _ttc_layer(h: torch.Tensor, adapter: Any, horizon: int, scale: float) -> torch.Tensor:
    from ttc_plugins.kernels.lqr.reference import lqr_reference

    flat = h.reshape(-1, h.shape[-1]).float()
    problem = adapter.problem(flat, torch.full((flat.shape[0],), horizon, dtype=torch.int64))
    u0 = lqr_reference(**problem)[0].float()
    u0 = u0 / u0.norm(dim=-1, keepdim=True).clamp_min(1e-6) * problem["h0"].norm(dim=-1, keepdim=True)
    delta = adapter.out_proj(u0.flatten(1)) * adapter.gate
    return (flat + scale * delta).reshape(h.shape).to(h.dtype)


class HFReference:
    def __init__(self, model_dir: str | Path, dtype: torch.dtype = torch.float32):
        from transformers import AutoModelForCausalLM

        self.model_dir = str(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), torch_dtype=dtype).eval()
        self.layers = self.model.model.layers

    def _vector(self, spec: Any, vectors: Mapping[str, str] | None) -> torch.Tensor:
        if isinstance(spec, str):
            from ttc_plugins.controls.vectors import VectorLibrary

            return torch.tensor(VectorLibrary(vectors or {}).get(spec), dtype=torch.float32)
        return torch.tensor(spec, dtype=torch.float32)

    def _hooks(self, control: Mapping[str, Any] | None, vectors: Mapping[str, str] | None,
               ttc_layers: Mapping[int, str] | None = None) -> list:
        if not control:
            return []
        if control.get("name") == "ttc_layer":
            return self._ttc_layer_hooks(control, ttc_layers or {})
        if control.get("name") != "steering":
            raise NotImplementedError(f"reference knows only the steering control, not {control.get('name')!r}")
        v = self._vector(control["vector"], vectors)
        scale = float(control.get("scale", 1.0))
        mode = control.get("mode", "add")
        preserve = bool(control.get("preserve_norm", False))

        def hook(module, args, output):
            if isinstance(output, tuple):
                return (_steer(output[0], v, scale, mode, preserve), *output[1:])
            return _steer(output, v, scale, mode, preserve)

        return [self.layers[i].register_forward_hook(hook) for i in sorted(set(control["layers"]))]

    def _ttc_layer_hooks(self, control: Mapping[str, Any], ttc_layers: Mapping[int, str]) -> list:
        from ttc_plugins.ttc_layer.adapter import TTCAdapter

        horizon, scale = int(control["horizon"]), float(control.get("scale", 1.0))
        if horizon == 0:
            return []
        handles = []
        for layer in sorted(set(control["layers"])):
            adapter = TTCAdapter.load(ttc_layers[layer], layer=layer).eval()

            def hook(module, args, output, adapter=adapter):
                if isinstance(output, tuple):
                    return (_ttc_layer(output[0], adapter, horizon, scale), *output[1:])
                return _ttc_layer(output, adapter, horizon, scale)

            handles.append(self.layers[layer].register_forward_hook(hook))
        return handles

    def _decode(self, logits: torch.Tensor, ttc: Mapping[str, Any] | None, out_ids: list[int]) -> None:
        if not ttc or not ttc.get("decoding"):
            return
        from ttc_plugins.manager import get_plugin_manager
        from ttc_plugins.types import LogitsRow, RequestContext

        pm = get_plugin_manager()
        params = pm.parse_params({"decoding": ttc["decoding"]})
        ctx = RequestContext(request_id="ref", params=params, engine="reference")
        for named in params.decoding:
            pm.decoders.get(named.name).apply(logits, [LogitsRow(0, ctx, out_ids)], [named.args])

    @torch.no_grad()
    def generate_one(self, prompt: Sequence[int], ttc: Mapping[str, Any] | None, max_tokens: int,
                     vectors: Mapping[str, str] | None = None, ttc_layers: Mapping[int, str] | None = None) -> Result:
        handles = self._hooks((ttc or {}).get("control"), vectors, ttc_layers)
        try:
            ids = torch.tensor([list(prompt)])
            out = self.model(input_ids=ids, use_cache=True)
            past = out.past_key_values
            logits = out.logits[:, -1, :].float()
            tokens: list[int] = []
            logprobs: list[float] = []
            for _ in range(max_tokens):
                raw = torch.log_softmax(logits, dim=-1)
                processed = logits.clone()
                self._decode(processed, ttc, tokens)
                tok = int(processed[0].argmax())
                tokens.append(tok)
                logprobs.append(float(raw[0, tok]))
                out = self.model(input_ids=torch.tensor([[tok]]), past_key_values=past, use_cache=True)
                past = out.past_key_values
                logits = out.logits[:, -1, :].float()
            return tokens, logprobs
        finally:
            for h in handles:
                h.remove()

    def generate(self, prompts: Sequence[Sequence[int]], ttcs: Sequence[Mapping[str, Any] | None], max_tokens: int,
                 vectors: Mapping[str, str] | None = None) -> list[Result]:
        return [self.generate_one(p, t, max_tokens, vectors) for p, t in zip(prompts, ttcs)]

    def cached(self, **generate_kw: Any) -> Callable[[Sequence[Sequence[int]], Sequence[Any], int], list[Result]]:
        """``generate`` with ``generate_kw`` (``vectors``, ``ttc_layers``) fixed, each (prompt,
        ttc, max_tokens) computed once per suite: the suites' ``reference`` fixture."""
        cache: dict[tuple, Result] = {}

        def run(prompts, ttcs, max_tokens):
            out = []
            for p, t in zip(prompts, ttcs):
                key = (tuple(p), json.dumps(t, sort_keys=True), max_tokens)
                if key not in cache:
                    cache[key] = self.generate_one(p, t, max_tokens, **generate_kw)
                out.append(cache[key])
            return out

        return run

    @torch.no_grad()
    def beam_search(self, prompt: Sequence[int], width: int, max_tokens: int, eos_token_id: int | None,
                    length_penalty: float = 1.0, early_stopping: bool | str = False,
                    stop_token_ids: Sequence[int] = (), stop: Sequence[str] = ()) -> list[tuple[list[int], float, float]]:
        """Finished hypotheses ``(generated token ids, summed raw logprob, score)``, best first."""
        terminal = set(stop_token_ids) | ({eos_token_id} if eos_token_id is not None else set())
        if stop:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.model_dir)

        def ends(toks: list[int]) -> bool:
            if toks[-1] in terminal:
                return True
            return bool(stop) and any(s in tokenizer.decode(toks, skip_special_tokens=True) for s in stop)
        live: list[tuple[list[int], float]] = [([], 0.0)]
        done: list[tuple[list[int], float, float]] = []

        def score(cum: float, n: int) -> float:
            return cum / (n ** length_penalty)

        def add(toks: list[int], cum: float) -> None:
            s = score(cum, len(toks))
            if len(done) < width or s > min(d[2] for d in done):
                done.append((toks, cum, s))
                if len(done) > width:
                    done.remove(min(done, key=lambda d: d[2]))

        for step in range(1, max_tokens + 1):
            cands = []
            for b, (toks, cum) in enumerate(live):
                logits = self.model(input_ids=torch.tensor([list(prompt) + toks])).logits[0, -1].float()
                lps = torch.log_softmax(logits, dim=-1)
                top = torch.topk(lps, 2 * width)
                for rank, (lp, tok) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
                    cands.append((cum + lp, b, rank, tok))
            cands.sort(key=lambda c: (-c[0], c[1], c[2]))
            nxt: list[tuple[list[int], float]] = []
            for rank, (cum, b, _, tok) in enumerate(cands):
                if ends(live[b][0] + [tok]):
                    if rank < width:
                        add(live[b][0] + [tok], cum)
                    continue
                nxt.append((live[b][0] + [tok], cum))
                if len(nxt) == width:
                    break
            live = nxt
            if not live or step == max_tokens:
                for toks, cum in live:
                    add(toks, cum)
                break
            if len(done) >= width:
                if early_stopping is True:
                    break
                horizon = max_tokens if (early_stopping == "never" and length_penalty > 0) else step
                if score(max(c for _, c in live), horizon) <= min(d[2] for d in done):
                    break
        return sorted(done, key=lambda d: -d[2])
