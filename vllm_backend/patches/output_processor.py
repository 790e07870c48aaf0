"""Patch: ``vllm.v1.engine.output_processor.RequestState.{from_new_request, make_request_output}``.

Why: per-request KV accounting (prompt tokens reused from the prefix cache vs tokens computed)
must reach the ``ttc_kv_report`` / ``ttc_request_finished`` hooks in the frontend and the caller's
results; vLLM computes ``num_cached_tokens`` per request but has no finish callback.
How: ``from_new_request`` keeps the request's ``extra_args`` on the state when it opted in;
``make_request_output`` calls the hooks once the request finished and attaches the summary to the
``RequestOutput`` as ``output.ttc``; a token beam search's report (``kv_transfer_params["ttc_beam"]``,
set by the TTC scheduler) moves to ``output.ttc["beam"]``. Plain requests are untouched. See LEDGER.md.
"""

from __future__ import annotations

import functools

from .. import frontend

TARGET = "vllm.v1.engine.output_processor.RequestState"
BEAM_RESULT_KEY = "ttc_beam"  # beam_scheduler.RESULT_KEY (not imported: the frontend never loads the scheduler)
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
        state._ttc_extra = extra if extra and extra.get("ttc") is not None else None
        state._ttc_reported = False
        return state

    @functools.wraps(original_make)
    def make_request_output(self, new_token_ids, pooling_output, finish_reason, *args, **kwargs):
        output = original_make(self, new_token_ids, pooling_output, finish_reason, *args, **kwargs)
        extra = getattr(self, "_ttc_extra", None)
        if extra is None or finish_reason is None or self._ttc_reported:
            return output
        self._ttc_reported = True
        beam = (getattr(output, "kv_transfer_params", None) or {}).get(BEAM_RESULT_KEY) if output is not None else None
        summary = frontend.report_finished(
            extra,
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
    RequestState.make_request_output = make_request_output
    _applied = True
