"""The TTC logits processor: relays the decoding hooks for requests that opted in.

Loaded in the worker (entry point ``vllm.logits_processors``, or ``logits_processors=``). It
tracks the persistent batch through vLLM's ``BatchUpdate`` stream, so it also keeps the engine's
:class:`~.worker.ControlState` current for the residual-control op.

Requests without a ``ttc`` section are never touched: ``apply`` returns the logits unchanged when no
row opted in, and otherwise edits only opted-in rows (through ``ttc_process_logits``). Token
acceptance: before each step, the tokens an opted-in request sampled since the last step go to
``ttc_accept_token``; after a rejection the row may only sample EOS, which ends the request there
(a logits processor cannot finish a request itself; a request with ``ignore_eos`` keeps going). When the
``ttc`` general plugin was filtered out (``VLLM_PLUGINS``), the processor stays inert: vLLM loads
logits processors regardless of that allow-list.

A hook that raises here, or a control that failed in the forward pass, fails only its own rows
(:mod:`ttc_plugins.runtime.faults`): they sample EOS from then on, and the failure is recorded for
the engine core's scheduler, which ends the request with finish reason ``error``
(``patches/scheduler_errors.py``); the rest of the batch is untouched and the engine keeps serving.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.sampling_params import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, process_dict_updates

from ttc_plugins.runtime import faults
from ttc_plugins.runtime.requests import context_from_wire
from ttc_plugins.runtime.wire import REQUEST_ID_KEY, TTC_KEY
from ttc_plugins.types import LogitsBatch, LogitsRow

from . import worker, is_registered


class TTCLogitsProcessor(LogitsProcessor):
    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        """Frontend check of the request's ``ttc`` section (a ``ValueError`` becomes HTTP 400).
        Control resolution and the cache salt happen right after, in the input-processor patch."""
        if not is_registered():
            return
        extra = sampling_params.extra_args
        if not extra or extra.get(TTC_KEY) is None:
            return
        from .frontend import parse_request_params

        parse_request_params(extra[TTC_KEY])

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool):
        self.enabled = is_registered()
        self.state = worker.state_for(vllm_config)
        self.primary = self.enabled and self.state.claim(self)
        self._pm = None
        eos = getattr(vllm_config.model_config.hf_config, "eos_token_id", None)
        self.eos_token_id = eos[0] if isinstance(eos, (list, tuple)) else eos

    def is_argmax_invariant(self) -> bool:
        # Decoders (force_token, ban_tokens) change the argmax of the rows that name them.
        return False

    def _new_row(self, params: SamplingParams, prompt_ids: list[int] | None, output_ids: list[int]):
        extra = params.extra_args
        if not extra or extra.get(TTC_KEY) is None:
            return None
        if self._pm is None:
            from ttc_plugins.manager import get_plugin_manager

            self._pm = get_plugin_manager()
        # the frontend's canonical JSON: never fails here
        ctx = context_from_wire(self._pm, extra, request_id=str(extra.get(REQUEST_ID_KEY, "")),
                                prompt_token_ids=prompt_ids or (), engine="vllm")
        return worker.RowState(ctx=ctx, output_token_ids=output_ids)

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if not self.primary or not batch_update:
            return
        rows = self.state.rows
        if process_dict_updates(rows, batch_update, self._new_row):
            self.state.rows_changed()

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        # a duplicate processor (not primary) never calls the hooks
        opted = self.state.rows if self.primary else None
        if not opted or self._pm is None:
            return logits
        if self._pm.has_impls("ttc_accept_token"):
            self._judge_tokens(logits)
        num_rows = logits.shape[0]
        if self._pm.has_impls("ttc_process_logits"):
            # every opted-in row sees ttc_process_logits (the hook's contract), failed ones excepted
            rows = [
                LogitsRow(index=i, ctx=r.ctx, output_token_ids=r.output_token_ids)
                for i, r in sorted(opted.items())
                if i < num_rows and r.failed is None
            ]
            if rows:
                for i, failure in faults.process_logits(self._pm, LogitsBatch(logits=logits, rows=rows)).items():
                    opted[i].failed = failure
        for i, row in opted.items():
            if i < num_rows and (row.rejected or row.failed is not None):
                self._end_row(logits, i, row)
        return logits

    def _end_row(self, logits: torch.Tensor, i: int, row: "worker.RowState") -> None:
        """A rejected or failed row samples only EOS; a failure goes to the scheduler once."""
        if row.failed is not None and not row.failure_recorded:
            worker.record_failure(row.ctx.request_id, row.failed)
            row.failure_recorded = True
        if self.eos_token_id is not None:
            logits[i].fill_(float("-inf"))
            logits[i, self.eos_token_id] = 0.0

    def _judge_tokens(self, logits: torch.Tensor) -> None:
        """Relay ``ttc_accept_token`` for new tokens of opted-in rows."""
        for i, row in self.state.rows.items():
            if i >= logits.shape[0]:
                continue
            out = row.output_token_ids
            while not row.rejected and row.failed is None and row.judged < len(out):
                verdict = faults.accept_token(self._pm, row.ctx, int(out[row.judged]), row.judged)
                if isinstance(verdict, faults.HookFailure):
                    row.failed = verdict
                else:
                    row.rejected = not verdict
                row.judged += 1
