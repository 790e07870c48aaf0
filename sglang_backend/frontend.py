"""Frontend side (SGLang main process, ``TokenizerManager``): validate, resolve, isolate, report.

- :func:`on_tokenized` runs on every tokenized generate request: the runtime
  (:mod:`ttc_plugins.runtime.requests`) validates ``custom_params.ttc`` against this server's facts,
  resolves the control and derives the salt; this seam writes the canonical JSON into
  ``custom_params`` and sets the radix ``cache_salt`` (SGLang keys every radix node by it). Errors
  are ``ValueError`` subclasses naming the field: SGLang answers HTTP 400 and ``Engine.generate``
  raises, and the scheduler never sees the request.
- a ``ttc.beam`` request is checked (:func:`check_beam`: ``n``, stop strings, ``return_logprob``;
  the width limit is one of the facts) and sent as a SGLang beam request (``SamplingParams.beam_width``) whose steps
  the scheduler hands to TokenBeam (:mod:`.beam_scheduler`); its report arrives in ``meta_info`` and
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
from ttc_plugins.runtime.report import beam_kv_stats, finish_request, kv_stats
from ttc_plugins.runtime.requests import prepare_request, without_private
from ttc_plugins.runtime.wire import BEAM_REPORT_KEY, TTC_KEY
from ttc_plugins.types import EngineFacts, RequestContext

from .config import EngineConfig

ENGINE = "sglang"
SEARCH_NOT_A_GENERATION = (
    "a search runs in the OpenAI server's /v1/completions and /v1/chat/completions handlers "
    "(custom_params.ttc with a 'search' object), or in Python with ttc_plugins.search.run_search over "
    "sglang_backend.search_ops.SGLangEngineOps; it cannot be a single engine generation"
)

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
        self._facts: EngineFacts | None = None

    def facts(self, tokenizer_manager: Any) -> EngineFacts:
        """What this server and its model are (built once): the runtime checks requests against it."""
        if self._facts is None:
            mc = tokenizer_manager.model_config
            hf = getattr(mc, "hf_text_config", None) or mc.hf_config
            refused = {"ttc.search": SEARCH_NOT_A_GENERATION}
            reason = controls_unavailable(tokenizer_manager, self.config)
            if reason:
                refused["ttc.control"] = reason
            # A ttc_layer control at a layer with no hosted adapter is refused (a 400 naming
            # ttc.control.layers), never accepted and ignored.
            self._facts = EngineFacts(
                vocab_size=getattr(mc, "vocab_size", None) or getattr(hf, "vocab_size", None),
                hidden_size=getattr(hf, "hidden_size", None), num_layers=getattr(hf, "num_hidden_layers", None),
                **({} if reason else self.config.control_facts()), refused=refused,
                max_beam_width=self.config.max_beam_width, beam_width_limits="TTC_SGLANG_CONFIG max_beam_width")
        return self._facts

    def on_tokenized(self, tokenizer_manager: Any, tokenized: Any, input_ids: Any) -> None:
        sp = getattr(tokenized, "sampling_params", None)
        if sp is None:  # embedding requests carry no generation settings we act on
            return
        custom = getattr(sp, "custom_params", None)
        if custom is not None and not isinstance(custom, Mapping):
            raise TTCParamError("custom_params", f"must be a JSON object, got {type(custom).__name__}")
        if custom is not None and TTC_KEY in custom and custom[TTC_KEY] is None:
            raise TTCParamError("ttc", "must be a JSON object, got null; leave the key out to not use ttc")
        prepared = prepare_request(
            self.pm, (custom or {}).get(TTC_KEY), request_id=str(tokenized.rid),
            prompt_token_ids=list(input_ids) if input_ids is not None else (),
            facts=self.facts(tokenizer_manager), engine=ENGINE, cache_salt=getattr(tokenized, "cache_salt", None))
        if prepared is None:
            if custom is not None:
                sp.custom_params = without_private(custom)
            return
        beam = prepared.ctx.params.beam
        if beam is not None:  # run as a SGLang beam group whose steps TokenBeam decides
            check_beam(getattr(sp, "n", 1), getattr(sp, "stop_strs", None),
                       bool(getattr(tokenized, "return_logprob", False)), getattr(sp, "beam_width", None))
            sp.beam_width = beam_rows(beam.width)
        sp.custom_params = {**without_private(custom), **prepared.wire}
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
            stats = beam_kv_stats(kv["tokens_computed"], kv["prompt_tokens_cached"] + kv["tokens_shared_by_fork"],
                                  kv["peak_blocks"])
        else:
            stats = kv_stats(prompt_len, int(meta.get("cached_tokens") or 0), output_len, page_size)
        meta["ttc"] = finish_request(self.pm, ctx, stats, finish_reason_name(meta.get("finish_reason")), output_ids)
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


def check_beam(n: int | None, stop_strs: Any, return_logprob: bool, beam_width: int | None) -> None:
    """SGLang's own sampling settings a ``ttc.beam`` request cannot combine with (the width limit
    is a fact of the server, checked by the runtime).

    :raises TTCParamError: naming the field.
    """
    if n is not None and n > 1:
        raise TTCParamError("n", "ttc.beam answers with every beam in one result; n must be 1")
    if stop_strs:
        raise TTCParamError("stop", "ttc.beam on SGLang stops on tokens only (EOS, stop_token_ids); "
                                    "SGLang's beam rows cannot match stop strings")
    if return_logprob:
        raise TTCParamError("return_logprob", "ttc.beam reports each beam's cumulative_logprob; "
                                              "per-token logprobs are not returned")
    if beam_width is not None and beam_width > 1:
        raise TTCParamError("beam_width", "use either SGLang's own beam_width or ttc.beam, not both")


def beam_rows(width: int) -> int:
    """The SGLang ``beam_width`` a ``ttc.beam`` of ``width`` is sent with: SGLang runs width 1 as
    no beam at all, so a width-1 search rides a 2-row group."""
    return max(width, 2)


def finish_reason_name(finish_reason: Any) -> str | None:
    """SGLang's ``meta_info["finish_reason"]`` (``{"type": "length", ...}``) as a plain name."""
    if finish_reason is None:
        return None
    if isinstance(finish_reason, Mapping):
        kind = finish_reason.get("type")
        return str(kind) if kind is not None else None
    return str(finish_reason)
