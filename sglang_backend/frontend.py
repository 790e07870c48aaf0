"""Frontend side (SGLang main process, ``TokenizerManager``): validate, resolve, isolate, report.

- :func:`on_tokenized` runs on every tokenized generate request: it validates ``custom_params.ttc``,
  resolves the control, rewrites the canonical JSON and sets the radix ``cache_salt``
  (:mod:`.requests`). Errors are ``ValueError`` subclasses naming the field: SGLang answers HTTP 400
  and ``Engine.generate`` raises, and the scheduler never sees the request.
- a ``ttc.beam`` request is checked (``requests.check_beam``: width limit, ``n``, stop strings,
  ``return_logprob``) and sent as a SGLang beam request (``SamplingParams.beam_width``) whose steps
  the scheduler hands to TokenBeam (:mod:`.token_beam`); its report arrives in ``meta_info`` and
  becomes ``meta_info["ttc"]["beam"]`` (every beam with its text, the KV accounting).
- :func:`check_custom_logit_processor` refuses pickled ``custom_logit_processor`` payloads.
- :func:`on_output` sees each output dict of an opted-in request; when it finishes it calls
  ``ttc_kv_report`` and ``ttc_request_finished`` and adds ``meta_info["ttc"]``.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from typing import Any, Mapping

from ttc_plugins.errors import TTCError, TTCParamError
from ttc_plugins.types import KVStats, RequestContext, RequestReport

from .config import EngineConfig
from .requests import ModelInfo, check_beam, finish_reason_name, kv_stats, prepare_request, strip_resolved

BEAM_REPORT_KEY = "ttc_beam"  # token_beam.REPORT_KEY (not imported: it is the scheduler's module)

log = logging.getLogger("ttc_plugins.sglang_backend")

CLP_REFUSED = (
    "ttc-plugins refuses requests carrying custom_logit_processor: SGLang unpickles those bytes in the "
    "scheduler process (arbitrary code execution). Name a decoder registered on the server in "
    "sampling_params.custom_params.ttc.decoding instead (JSON only). An operator who trusts every client "
    "can allow it with TTC_SGLANG_CONFIG='{\"allow_custom_logit_processor\": true}'."
)


def controls_unavailable(tokenizer_manager: Any, config: EngineConfig) -> str | None:
    """Why this server cannot apply hidden-state controls (the request is refused), or ``None``."""
    if not config.controls:
        return 'this server runs with TTC_SGLANG_CONFIG {"controls": false}'
    args = getattr(tokenizer_manager, "server_args", None)
    if args is None:
        return None
    if str(getattr(args, "device", "cpu")) != "cpu" and not getattr(args, "disable_cuda_graph", True):
        return ("hidden-state controls need a server started with --disable-cuda-graph (graph replay skips "
                "the layer hooks); decoding hooks work either way")
    if getattr(args, "speculative_algorithm", None):
        return "hidden-state controls are not supported with speculative decoding"
    return None


class CustomLogitProcessorRefused(TTCError, ValueError):
    """A request carried a ``custom_logit_processor`` (a pickle) and the server does not allow it."""


class FrontendState:
    """Opted-in requests in flight in this process, by request id."""

    def __init__(self, pm: Any, config: EngineConfig):
        self.pm = pm
        self.config = config
        self._ctx: dict[str, RequestContext] = {}
        self._lock = threading.Lock()
        self._model: ModelInfo | None = None

    def model_info(self, tokenizer_manager: Any) -> ModelInfo:
        if self._model is None:
            mc = tokenizer_manager.model_config
            hf = getattr(mc, "hf_text_config", None) or mc.hf_config
            self._model = ModelInfo(
                hidden_size=getattr(hf, "hidden_size", None),
                num_layers=getattr(hf, "num_hidden_layers", None),
                vocab_size=getattr(mc, "vocab_size", None) or getattr(hf, "vocab_size", None),
                vectors=self.config.vector_library(),
            )
        return self._model

    def on_tokenized(self, tokenizer_manager: Any, tokenized: Any, input_ids: Any) -> None:
        sp = getattr(tokenized, "sampling_params", None)
        if sp is None:  # embedding requests carry no generation settings we act on
            return
        custom = getattr(sp, "custom_params", None)
        prepared = prepare_request(
            self.pm,
            str(tokenized.rid),
            custom,
            getattr(tokenized, "cache_salt", None),
            list(input_ids) if input_ids is not None else (),
            self.model_info(tokenizer_manager),
        )
        if prepared is None:
            if custom is not None:
                sp.custom_params = strip_resolved(custom)
            return
        if prepared.ctx.control is not None:
            reason = controls_unavailable(tokenizer_manager, self.config)
            if reason:
                raise TTCParamError("ttc.control", reason)
        beam = prepared.ctx.params.beam
        if beam is not None:  # run as a SGLang beam group whose steps TokenBeam decides
            sp.beam_width = check_beam(beam.width, self.config.max_beam_width, getattr(sp, "n", 1),
                                       getattr(sp, "stop_strs", None), bool(getattr(tokenized, "return_logprob", False)),
                                       getattr(sp, "beam_width", None))
        sp.custom_params = prepared.custom_params
        tokenized.cache_salt = prepared.cache_salt
        with self._lock:
            self._ctx[prepared.ctx.request_id] = prepared.ctx

    def check_custom_logit_processor(self, obj: Any) -> None:
        if getattr(obj, "custom_logit_processor", None) and not self.config.allow_custom_logit_processor:
            raise CustomLogitProcessorRefused(CLP_REFUSED)

    def tracked(self, rid: Any) -> bool:
        return isinstance(rid, str) and rid in self._ctx

    def forget(self, rid: Any) -> None:
        with self._lock:
            self._ctx.pop(rid, None)

    def on_output(self, tokenizer_manager: Any, rid: str, out: Mapping[str, Any]) -> None:
        """Called with every output dict of request ``rid``; acts once it has finished."""
        meta = out.get("meta_info") if isinstance(out, Mapping) else None
        if not meta or meta.get("finish_reason") is None:
            return
        with self._lock:
            ctx = self._ctx.pop(rid, None)
        if ctx is None:
            return
        output_ids = tuple(out.get("output_ids") or ())
        prompt_len = int(meta.get("prompt_tokens", len(ctx.prompt_token_ids)))
        output_len = int(meta.get("completion_tokens", len(output_ids)))
        page_size = getattr(getattr(tokenizer_manager, "server_args", None), "page_size", None) or 1
        beam = beam_report_of(meta) if ctx.params is not None and ctx.params.beam is not None else None
        if beam is not None:
            kv = beam["kv"]
            reused = kv["prompt_tokens_cached"] + kv["tokens_shared_by_fork"]
            stats = KVStats(tokens_computed=kv["tokens_computed"], tokens_reused=reused,
                            blocks_held=kv["peak_blocks"], peak_blocks=kv["peak_blocks"])
        else:
            stats = kv_stats(prompt_len, int(meta.get("cached_tokens") or 0), output_len, page_size)
        self.pm.hook.ttc_kv_report(ctx=ctx, stats=stats)
        report = RequestReport(
            request_id=rid, finish_reason=finish_reason_name(meta.get("finish_reason")), output_token_ids=output_ids, kv=stats
        )
        self.pm.hook.ttc_request_finished(ctx=ctx, report=report)
        meta["ttc"] = {
            "control_key": ctx.control.key if ctx.control is not None else None,
            "kv": {
                "tokens_computed": stats.tokens_computed,
                "tokens_reused": stats.tokens_reused,
                "blocks_held": stats.blocks_held,
                "peak_blocks": stats.peak_blocks,
            },
            **report.extra,
        }
        if beam is not None:
            meta["ttc"]["beam"] = beam
            sink = BEAM_SINK.get()
            if sink is not None:
                sink[rid] = beam


#: set by the OpenAI beam handler (``serving.handle_beam``) around the original handler: the
#: finished ``ttc.beam`` reports of the requests served in that context, by request id
BEAM_SINK: "contextvars.ContextVar[dict | None]" = contextvars.ContextVar("ttc_beam_sink", default=None)


def beam_report_of(meta: dict) -> dict | None:
    """The ``ttc.beam`` report the scheduler sent (request-level ``customized_info``), with each
    beam's text from SGLang's ``beam_results`` (same order: best score first)."""
    raw = meta.pop(BEAM_REPORT_KEY, None)
    results = meta.get("beam_results") or []
    for r in results:
        (r.get("meta_info") or {}).pop(BEAM_REPORT_KEY, None)
    if not raw:
        return None
    report = raw[-1] if isinstance(raw, list) else raw
    for i, b in enumerate(report["beams"]):
        b["text"] = results[i].get("text") if i < len(results) else None
    return report
