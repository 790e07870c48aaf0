"""Patch: ``vllm.v1.engine.output_processor.RequestState.{from_new_request, make_request_output}``.

Why: per-request KV accounting (prompt tokens reused from the prefix cache vs tokens computed)
must reach the ``ttc_kv_report`` / ``ttc_request_finished`` hooks in the frontend and the caller's
results; vLLM computes ``num_cached_tokens`` per request but has no finish callback.
How: ``from_new_request`` gives the state of an opted-in request its own ``make_request_output``
(bound on the instance), which calls the hooks once the request finished and attaches the summary
to the ``RequestOutput`` as ``output.ttc``; a token beam search's report
(``kv_transfer_params["ttc_beam"]``, set by the TTC scheduler) moves to ``output.ttc["beam"]``. The
class method is not replaced: plain requests run vLLM's own per-step path with no wrapper in it.
See LEDGER.md.
"""

from __future__ import annotations

import functools
import types

from ttc_plugins.runtime.wire import BEAM_REPORT_KEY

from .. import frontend

TARGETS = ("vllm.v1.engine.output_processor.RequestState.from_new_request",)
_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    from vllm.v1.engine.output_processor import RequestState

    original_new = RequestState.from_new_request.__func__
    original_make = RequestState.make_request_output

    @functools.wraps(original_new)
    def from_new_request(cls, tokenizer, request, *args, **kwargs):
        state = original_new(cls, tokenizer, request, *args, **kwargs)
        sp = request.sampling_params
        extra = sp.extra_args if sp is not None else None
        if extra and extra.get("ttc") is not None:
            state._ttc_extra = extra
            state._ttc_reported = False
            state.make_request_output = types.MethodType(reporting_make_request_output, state)
        return state

    @functools.wraps(original_make)
    def reporting_make_request_output(self, new_token_ids, pooling_output, finish_reason, *args, **kwargs):
        output = original_make(self, new_token_ids, pooling_output, finish_reason, *args, **kwargs)
        if finish_reason is None or self._ttc_reported:
            return output
        self._ttc_reported = True
        beam = (getattr(output, "kv_transfer_params", None) or {}).get(BEAM_REPORT_KEY) if output is not None else None
        summary = frontend.report_finished(
            self._ttc_extra,
            self.external_req_id,
            self.prompt_token_ids,
            list(self.detokenizer.output_token_ids),
            str(finish_reason),
            self.num_cached_tokens,
            frontend.block_size(),
            beam_kv=beam["kv"] if beam is not None else None,
        )
        if output is not None:
            if beam is not None:
                summary["beam"] = beam
            output.ttc = summary
        return output

    RequestState.from_new_request = classmethod(from_new_request)
    _applied = True
