"""Worker side (SGLang scheduler process): per-request contexts, decoding hooks, residual control.

- :meth:`WorkerState.on_req_created` rebuilds each request's context from the canonical JSON the
  frontend wrote (``Req.sampling_params.custom_params``) and keeps it on the ``Req``.
- :meth:`WorkerState.before_forward` maps the forward batch's tokens to request ids
  (``ForwardBatch.rids`` + per-request token counts) and builds the per-layer control tensors;
  a torch forward hook on every decoder layer applies them (steering vectors, and the TTC adapters
  of ``ttc_layers`` at each token's own horizon) through SGLang's residual-stream boundary
  accessors.
- :meth:`WorkerState.process_logits` runs ``ttc_process_logits`` on the step's logits before sampling.
- :meth:`WorkerState.after_finish_check` runs ``ttc_accept_token``.
- :meth:`WorkerState.on_beam_admitted` gives a ``ttc.beam`` request's SGLang beam group
  TokenBeam's rules (:mod:`.beam_scheduler`).

Nothing here raises into SGLang's scheduler loop for a bad request (that would kill the engine):
a request whose context cannot be rebuilt is aborted with a message instead, and a hook that raises
(or a control whose output is not finite) fails only its own requests
(:mod:`ttc_plugins.runtime.faults`): they end with an abort whose status is 500 and whose message
names the hook and the error, while the rest of the batch runs on unchanged.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import weakref
from http import HTTPStatus
from typing import Any

import torch

from ttc_plugins.runtime import faults
from ttc_plugins.runtime.control_tables import (ControlTables, ForwardControls, apply_adapter, apply_steering,
                                                token_slots)
from ttc_plugins.runtime.requests import context_from_wire
from ttc_plugins.types import LogitsBatch, LogitsRow, RequestContext

from .config import EngineConfig

log = logging.getLogger("ttc_plugins.sglang_backend")
CTX_ATTR = "_ttc_ctx"
FAILED_ATTR = "_ttc_failed"


def _finish_rejected_cls():
    from sglang.srt.managers.schedule_batch import BaseFinishReason

    class FINISH_REJECTED(BaseFinishReason):
        """A ``ttc_accept_token`` implementation rejected the last token (it stays in the output)."""

        def __init__(self, token_id: int):
            super().__init__()
            self.token_id = token_id

        def to_json(self):
            return {"type": "rejected", "matched": self.token_id}

    return FINISH_REJECTED


class WorkerState:
    def __init__(self, pm: Any, config: EngineConfig):
        self.pm = pm
        self.config = config
        self.reqs: "weakref.WeakValueDictionary[str, Any]" = weakref.WeakValueDictionary()
        self.hidden_size: int | None = None
        self.num_layers: int | None = None
        self._local = threading.local()
        self._finish_rejected = None
        self.layers_hooked = 0
        self.tables: ControlTables | None = None
        #: layer -> TTC adapter hosted there (``TTC_SGLANG_CONFIG`` ``ttc_layers``), on the model's device
        self.adapters: dict[int, torch.nn.Module] = {}

    # -- requests -------------------------------------------------------------------------
    def on_req_created(self, req: Any) -> None:
        custom = getattr(getattr(req, "sampling_params", None), "custom_params", None)
        if not custom:
            return
        try:
            ctx = context_from_wire(self.pm, custom, request_id=str(req.rid), prompt_token_ids=list(req.origin_input_ids),
                                    engine="sglang")
        except Exception as exc:  # never let a bad request take the scheduler down
            req.set_finish_with_abort(f"ttc-plugins: invalid ttc parameters reached the scheduler: {exc}")
            return
        if ctx is None:
            return
        setattr(req, CTX_ATTR, ctx)
        self.reqs[str(req.rid)] = req

    def on_beam_admitted(self, coordinator: Any, req: Any, user_params: Any) -> None:
        """SGLang admitted ``req`` as a beam request; a ``ttc.beam`` one gets TokenBeam's rules."""
        ctx = getattr(req, CTX_ATTR, None)
        beam = ctx.params.beam if ctx is not None and ctx.params is not None else None
        if beam is None:
            return
        from . import beam_scheduler

        beam_scheduler.attach(coordinator, req, user_params, beam)

    def ctx_of(self, rid: str) -> RequestContext | None:
        """The context of a live request whose hooks have not failed."""
        req = self.reqs.get(rid)
        if req is None or getattr(req, FAILED_ATTR, None) is not None:
            return None
        return getattr(req, CTX_ATTR, None)

    def fail(self, req: Any, failure: faults.HookFailure, *, now: bool = False) -> None:
        """End ``req`` with an abort (HTTP 500 naming the failure) at its next finish check, or
        ``now`` (after this step's check ran); its hooks and control are not called again."""
        if req is None or getattr(req, FAILED_ATTR, None) is not None:
            return
        from sglang.srt.managers.schedule_batch import FINISH_ABORT

        setattr(req, FAILED_ATTR, failure)
        reason = FINISH_ABORT(str(failure), HTTPStatus.INTERNAL_SERVER_ERROR, "InternalServerError")
        if now:
            req.finished_reason = reason
        else:
            req.to_finish = reason

    # -- model ----------------------------------------------------------------------------
    def on_model_loaded(self, model_runner: Any) -> None:
        hf = getattr(model_runner.model_config, "hf_text_config", None) or model_runner.model_config.hf_config
        self.hidden_size = int(hf.hidden_size)
        self.num_layers = int(hf.num_hidden_layers)
        self.tables = ControlTables(self.pm, hidden_size=self.hidden_size, num_layers=self.num_layers)
        from . import patches

        patches.verify_applied()
        if not self.config.controls:
            return
        layers = find_decoder_layers(model_runner.model, self.num_layers)
        if self.config.ttc_layers:
            from ttc_plugins.ttc_layer.hosting import load_hosted

            # a file that does not fit the model stops the engine at start, naming the key
            self.adapters = load_hosted(self.config.ttc_layers, root="TTC_SGLANG_CONFIG",
                                        hidden_size=self.hidden_size, num_layers=self.num_layers,
                                        device=next(model_runner.model.parameters()).device)
        for index, layer in layers.items():
            layer.register_forward_hook(self._make_layer_hook(index), with_kwargs=True)
        self.layers_hooked = len(layers)
        log.info("ttc-plugins: residual control installed on %d decoder layers", len(layers))

    def token_counts(self, forward_batch: Any) -> list[int] | None:
        mode = forward_batch.forward_mode
        if mode.is_idle():
            return None
        if mode.is_decode():
            return [1] * len(forward_batch.rids)
        if mode.is_extend():
            counts = forward_batch.extend_seq_lens_cpu
            if counts is None:
                counts = forward_batch.extend_seq_lens.tolist()
            return [int(c) for c in counts]
        return None

    def before_forward(self, forward_batch: Any) -> None:
        if not self.config.controls or not self.reqs:
            return
        rids = forward_batch.rids or []
        control_of = {}
        for rid in rids:
            ctx = self.ctx_of(rid)
            if ctx is not None and ctx.control is not None:
                control_of[rid] = ctx.control
        if not control_of:
            return
        counts = self.token_counts(forward_batch)
        num_tokens = int(forward_batch.input_ids.shape[0])
        if counts is None or sum(counts) > num_tokens:
            # never raise into the scheduler loop (that ends the engine): these requests fail
            why = (f"hidden-state control does not support forward mode {forward_batch.forward_mode!r}"
                   if counts is None else f"the batch maps {sum(counts)} tokens to its requests but has {num_tokens}")
            failure = faults.HookFailure("hidden-state control", why)
            for rid in control_of:
                self.fail(self.reqs.get(rid), failure)
            return
        # A decode batch carries the member rows of SGLang beam groups after the requests' own
        # rows (its beam tail, not in ``rids``); a beam never has a control: no slot for them.
        tail = num_tokens - sum(counts)
        owners, counts = ([*rids, None], [*counts, tail]) if tail else (list(rids), counts)
        specs, slots = token_slots(owners, counts, control_of)
        ctrl = self.tables.forward(specs, slots, forward_batch.input_ids.device)
        if ctrl is not None:
            for rid, spec in control_of.items():
                if spec in ctrl.failed:
                    self.fail(self.reqs.get(rid), ctrl.failed[spec])
            ends = list(itertools.accumulate(counts))  # token t belongs to owners[bisect_right(ends, t)]
            self._local.current = (list(rids), ctrl, ends, owners, list(control_of))

    def after_forward(self, forward_batch: Any) -> None:
        self._local.current = None

    def current_controls(self, forward_batch: Any) -> ForwardControls | None:
        """The controls of the forward pass running on this thread. SGLang hands the layers a
        copy of the batch it gave ``ModelRunner.forward``, so the pass is matched by its request
        ids rather than by object identity."""
        current = getattr(self._local, "current", None)
        if current is None:
            return None
        rids, ctrl = current[:2]
        if list(getattr(forward_batch, "rids", None) or []) != rids:
            return None
        return ctrl

    def fail_tokens(self, token_idx: torch.Tensor, failure: faults.HookFailure) -> None:
        """Fail the requests owning these tokens of the running forward pass."""
        _rids, _ctrl, ends, owners, _controlled = self._local.current
        for t in set(token_idx.tolist()):
            owner = owners[bisect.bisect_right(ends, t)]
            if owner is not None:
                self.fail(self.reqs.get(owner), failure)

    def fail_controlled(self, failure: faults.HookFailure) -> None:
        """Fail every request with a control in the running forward pass."""
        for rid in self._local.current[4]:
            self.fail(self.reqs.get(rid), failure)

    def _make_layer_hook(self, index: int):
        from sglang.srt.layers.layer_boundary.residual import access as residual_access
        from sglang.srt.layers.layer_boundary.residual import batch as residual_batch

        def hook(module, args, kwargs, output):
            forward_batch = args[2] if len(args) > 2 else kwargs.get("forward_batch")
            ctrl = self.current_controls(forward_batch)
            if ctrl is None:
                return None
            steer, adapt = ctrl.steer.get(index), ctrl.adapters.get(index)
            if steer is None and adapt is None:
                return None
            buf = residual_access.buffer(output)
            n = buf.shape[0] if buf is not None else ctrl.num_tokens
            if n != ctrl.num_tokens:  # never raise into the scheduler loop: the controlled requests fail
                why = f"layer {index} output has {n} tokens but the batch maps {ctrl.num_tokens}"
                self.fail_controlled(faults.HookFailure("hidden-state control", why))
                return None
            # SGLang refuses a new output tensor at its layer boundary: the update goes in as a delta
            needs_state = adapt is not None or steer.needs_state
            state = residual_batch.snapshot(output, forward_batch) if needs_state else None
            delta = torch.zeros(n, self.hidden_size, dtype=torch.float32,
                                device=state.device if state is not None else steer.vectors.device)
            if steer is not None:
                self._update(delta, state, steer.token_idx, lambda rows: apply_steering(rows, steer))
            if adapt is not None:  # a request has one control: these tokens are not the steered ones
                self._update(delta, state, adapt.token_idx, lambda rows: apply_adapter(rows, adapt, self.adapters[index]))
            new = residual_batch.add_to_output(output, forward_batch, delta.to(buf.dtype if buf is not None else delta.dtype))
            return new if new is not output else None

        return hook

    def _update(self, delta: torch.Tensor, state: torch.Tensor | None, token_idx: torch.Tensor, apply) -> None:
        """Write into ``delta`` how ``apply`` changes these tokens' residual-stream rows (float32;
        zeros where the state is not needed). Rows that come back non-finite are left unchanged
        and their requests fail."""
        rows = (state.index_select(0, token_idx).float() if state is not None
                else torch.zeros(len(token_idx), self.hidden_size, device=delta.device))
        updated = rows.clone()
        bad = apply(updated)
        if bad is not None:
            self.fail_tokens(token_idx[bad], faults.NONFINITE_STREAM)
        delta.index_copy_(0, token_idx, updated - rows)

    # -- sampling -------------------------------------------------------------------------
    def process_logits(self, logits_output: Any, forward_batch: Any) -> None:
        self._local.raw_logits = None
        if not self.reqs or not self.pm.has_impls("ttc_process_logits"):
            return
        rids = forward_batch.rids or []
        rows = []
        for i, rid in enumerate(rids):
            ctx = self.ctx_of(rid)
            if ctx is not None and ctx.opted_in:
                rows.append(LogitsRow(index=i, ctx=ctx, output_token_ids=self.reqs[rid].output_ids))
        if not rows:
            return
        logits = logits_output.next_token_logits
        if logits.shape[0] != len(rids):
            raise RuntimeError(f"ttc-plugins: {logits.shape[0]} logits rows for {len(rids)} requests")
        # Returned logprobs stay those of the raw logits (as with vLLM's raw_logprobs): the sampler
        # is handed the unedited copy through its ``logprob_logits`` argument.
        self._local.raw_logits = logits.clone() if forward_batch.return_logprob else None
        for i, failure in faults.process_logits(self.pm, LogitsBatch(logits=logits, rows=rows)).items():
            self.fail(self.reqs.get(rids[i]), failure)

    def take_raw_logits(self):
        """The unedited logits of the step just processed (once), or ``None``."""
        raw = getattr(self._local, "raw_logits", None)
        self._local.raw_logits = None
        return raw

    def after_finish_check(self, req: Any) -> None:
        ctx = getattr(req, CTX_ATTR, None)
        if (ctx is None or req.finished() or not req.output_ids or getattr(req, FAILED_ATTR, None) is not None
                or not self.pm.has_impls("ttc_accept_token")):
            return
        token = int(req.output_ids[-1])
        ok = faults.accept_token(self.pm, ctx, token, len(req.output_ids) - 1)
        if isinstance(ok, faults.HookFailure):
            self.fail(req, ok, now=True)
        elif ok is False:
            if self._finish_rejected is None:
                self._finish_rejected = _finish_rejected_cls()
            req.finished_reason = self._finish_rejected(token)


def find_decoder_layers(model: torch.nn.Module, num_layers: int) -> dict[int, torch.nn.Module]:
    """The model's decoder layers by global index (``model.model.layers`` in SGLang's LMs; under
    pipeline parallelism the layers of other ranks are placeholders and are skipped)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        candidates = [m for name, m in model.named_modules() if name.endswith("layers") and isinstance(m, torch.nn.ModuleList)]
        layers = next((m for m in candidates if len(m) == num_layers), None)
    if layers is None or len(layers) != num_layers:
        raise RuntimeError(
            f"ttc-plugins: cannot find the {num_layers} decoder layers of {type(model).__name__} "
            f"(expected model.model.layers); hidden-state control is unavailable for this model. "
            f'Start with TTC_SGLANG_CONFIG=\'{{"controls": false}}\' to serve it without controls.'
        )
    start = getattr(inner, "start_layer", 0) or 0
    end = getattr(inner, "end_layer", num_layers) or num_layers
    return {i: layers[i] for i in range(start, end)}
