"""A hook that raises inside the engine fails its own requests, never the engine.

The worker-side hooks (``ttc_process_logits``, ``ttc_accept_token``, ``ttc_prepare_controls``) run
inside the engine's step. An exception there would end the step and, with it, the engine (vLLM's
engine core dies; SGLang's scheduler loop exits), taking every other request down with it. The
backends call those hooks through the functions here, which find the requests whose hooks
raised, undo what the failed call wrote, and return a :class:`HookFailure` per failed request.
The backend then ends exactly those requests with an error (vLLM: finish reason ``error``, an
HTTP 500; SGLang: an abort with status 500 and this message) while the rest of the batch runs on
unchanged.

A control is held to the same rule: a slot whose steering write is not finite or leaves the
bound every client vector is held to (``controls.steering.MAX_WRITE``), or whose updated residual
stream is not finite, fails its requests and leaves their tokens unsteered, so nothing non-finite
is ever written into the KV cache that later requests may reuse.
"""

from __future__ import annotations

import logging
import math
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ttc_plugins.types import ControlPlan, LogitsBatch, RequestContext

if TYPE_CHECKING:  # pragma: no cover
    from ttc_plugins.manager import TTCPluginManager

log = logging.getLogger("ttc_plugins.runtime")


@dataclass(frozen=True)
class HookFailure:
    """Why one request failed inside the engine (its text is what the client is told)."""

    hook: str
    message: str

    def __str__(self) -> str:
        return f"ttc-plugins: {self.hook} failed for this request: {self.message}"


def describe(hook: str, exc: BaseException) -> HookFailure:
    """The failure of ``hook`` by ``exc``, naming the exception and the line that raised it."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    return HookFailure(hook, f"{type(exc).__name__}: {exc}{where}")


def process_logits(pm: "TTCPluginManager", batch: LogitsBatch) -> dict[int, HookFailure]:
    """Run ``ttc_process_logits`` on ``batch``; returns ``{row index: failure}``.

    When the batch call raises, the opted-in rows get their logits back and each row is run
    alone: a row whose call raises again keeps its original logits and fails; the others end up
    as the batch call would have left them (the hook edits only its own rows)."""
    index = torch.tensor([r.index for r in batch.rows], dtype=torch.long, device=batch.logits.device)
    saved = batch.logits.index_select(0, index)
    try:
        pm.hook.ttc_process_logits(batch=batch)
        return {}
    except Exception:  # noqa: BLE001 - any plugin error fails requests, not the engine
        batch.logits.index_copy_(0, index, saved)
    failed: dict[int, HookFailure] = {}
    for k, row in enumerate(batch.rows):
        try:
            pm.hook.ttc_process_logits(batch=LogitsBatch(logits=batch.logits, rows=[row]))
        except Exception as exc:  # noqa: BLE001
            batch.logits[row.index] = saved[k]
            failed[row.index] = _logged(describe("ttc_process_logits", exc), row.ctx)
    return failed


def accept_token(pm: "TTCPluginManager", ctx: RequestContext, token_id: int, position: int) -> bool | HookFailure:
    """``ttc_accept_token``'s verdict (``False`` rejects), or the failure when a hook raised."""
    try:
        return pm.hook.ttc_accept_token(ctx=ctx, token_id=token_id, position=position) is not False
    except Exception as exc:  # noqa: BLE001
        return _logged(describe("ttc_accept_token", exc), ctx)


def prepare_controls(pm: "TTCPluginManager", plan: ControlPlan) -> dict[int, HookFailure]:
    """Fill ``plan`` through ``ttc_prepare_controls``; returns ``{slot: failure}``, those slots
    removed from the plan (their tokens stay untouched).

    When the call for the whole plan raises, each slot is planned alone and the slots that
    succeed are merged back; a slot whose steering write is not finite or out of bounds fails too.
    """
    failed: dict[int, HookFailure] = {}
    try:
        pm.hook.ttc_prepare_controls(plan=plan)
    except Exception:  # noqa: BLE001
        plan.vectors.clear()
        plan.horizons.clear()
        for slot, spec in enumerate(plan.specs):
            alone = ControlPlan(specs=[spec], hidden_size=plan.hidden_size, num_layers=plan.num_layers)
            try:
                pm.hook.ttc_prepare_controls(plan=alone)
            except Exception as exc:  # noqa: BLE001
                failed[slot] = describe("ttc_prepare_controls", exc)
                continue
            for layer, by_slot in alone.vectors.items():
                if 0 in by_slot:
                    plan.vectors.setdefault(layer, {})[slot] = by_slot[0]
            for layer, by_slot in alone.horizons.items():
                if 0 in by_slot:
                    plan.horizons.setdefault(layer, {})[slot] = by_slot[0]
    for layer, by_slot in plan.vectors.items():
        for slot, (vector, scale, mode, _keep) in by_slot.items():
            bad = _unsafe_write(vector, scale, mode)
            if bad and slot not in failed:
                failed[slot] = HookFailure("ttc_prepare_controls", f"layer {layer}: {bad}")
    for layer, by_slot in plan.horizons.items():
        for slot, (_steps, scale) in by_slot.items():
            if not _finite_within(scale) and slot not in failed:
                failed[slot] = HookFailure("ttc_prepare_controls", f"layer {layer}: TTC-adapter scale {scale!r} "
                                           f"is not a finite number within +-{_max_write():g}")
    for table in (plan.vectors, plan.horizons):
        for layer in list(table):
            for slot in failed:
                table[layer].pop(slot, None)
            if not table[layer]:
                del table[layer]
    for slot, failure in failed.items():
        log.error("%s (control %r)", failure, plan.specs[slot].kind)
    return failed


def restore_nonfinite(stream: torch.Tensor, original: torch.Tensor) -> torch.Tensor | None:
    """Rows of the updated ``stream`` ([M, H]) holding a NaN or infinity get ``original`` back
    (their tokens stay unsteered); returns the [M] bool mask of those rows, or ``None`` when every
    row is finite (the one host sync is here: callers need not test the mask again)."""
    bad = ~torch.isfinite(stream).all(dim=-1)
    if not bool(bad.any()):
        return None
    stream[bad] = original[bad].to(stream.dtype)
    return bad


NONFINITE_STREAM = HookFailure("hidden-state control", "the controlled residual stream is not finite (NaN or "
                                                      "infinity); the request's tokens were left unsteered")


def _max_write() -> float:
    from ttc_plugins.controls.steering import MAX_WRITE

    return MAX_WRITE


def _finite_within(x: float) -> bool:
    return math.isfinite(x) and abs(x) <= _max_write()


def _unsafe_write(vector: Any, scale: float, mode: int) -> str | None:
    """Why writing ``scale`` x ``vector`` could make the residual stream non-finite, or ``None``:
    not finite, or outside the bound every request's steering is held to (``check_write``)."""
    from ttc_plugins.controls.steering import check_write
    from ttc_plugins.errors import TTCParamError

    values = torch.as_tensor(vector, dtype=torch.float64)
    if not math.isfinite(scale) or not bool(torch.isfinite(values).all()):
        return "the steering vector or scale is not finite"
    try:
        check_write(values.tolist(), scale, "project" if mode == ControlPlan.MODE_PROJECT else "add")
    except TTCParamError as exc:
        return f"{exc.field}: {exc.message}"
    return None


def _logged(failure: HookFailure, ctx: RequestContext | None) -> HookFailure:
    log.error("%s (request %s)", failure, getattr(ctx, "request_id", "?"))
    return failure
