"""Per-engine worker state: which request sits at which batch row, with which control.

The TTC logits processor receives vLLM's ``BatchUpdate`` stream (requests added, removed and moved
between rows of the persistent batch) before every forward pass; it keeps this state current. The
residual-control op, running inside the model's forward (compiled or not), then maps each token
of the flattened batch to its request through the attention metadata's ``query_start_loc`` and
reads the request's control from here: every token gets its own request's control.

One state per engine, keyed by the engine's ``static_forward_context`` dict, which vLLM hands to
every forward pass as ``ForwardContext.no_compile_layers``; several engines in one process (tests)
therefore never see each other's requests.
"""

from __future__ import annotations

import bisect
import copy
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ttc_plugins.runtime.control_tables import ControlTables, ForwardControls, token_slots
from ttc_plugins.runtime.faults import HookFailure
from ttc_plugins.types import RequestContext


@dataclass
class RowState:
    """One opted-in request in the persistent batch."""

    ctx: RequestContext
    output_token_ids: Sequence[int]
    #: output tokens already put to ``ttc_accept_token``; set once one was rejected
    judged: int = 0
    rejected: bool = False
    #: a worker-side hook failed for this request (:mod:`ttc_plugins.runtime.faults`): it samples
    #: only EOS from now on and the engine core ends it with finish reason ``error``
    failed: HookFailure | None = None
    failure_recorded: bool = False


class ControlState:
    def __init__(self, *, hidden_size: int | None = None, num_layers: int | None = None, plan_cache_size: int = 64):
        self.rows: dict[int, RowState] = {}
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.plan_cache_size = plan_cache_size
        self.processor: object | None = None
        self.controls_installed = False
        self._tables: ControlTables | None = None
        self._fc: Any = None
        self._plan: ForwardControls | None = None
        self._bounds: list[int] = []
        #: layer -> TTC adapter module hosted at that layer (loaded by model_wrap.install_controls)
        self.adapters: dict[int, torch.nn.Module] = {}

    # -- processor side ------------------------------------------------------------------------
    def claim(self, processor: object) -> bool:
        """The first TTC logits processor of an engine owns the state; a duplicate (the class
        loaded both from the entry point and from ``logits_processors=``) stays inert."""
        if self.processor is None:
            self.processor = processor
            return True
        return self.processor is processor

    @property
    def has_controls(self) -> bool:
        return self._num_controlled > 0

    _num_controlled = 0

    def rows_changed(self) -> None:
        self._num_controlled = sum(1 for r in self.rows.values() if r.ctx.control is not None)
        self._fc = None
        self._plan = None

    # -- forward side --------------------------------------------------------------------------
    @property
    def tables(self) -> ControlTables:
        if self._tables is None:
            if self.hidden_size is None or self.num_layers is None:
                raise RuntimeError("ttc: control state has no model dimensions (controls not installed)")
            from ttc_plugins.manager import get_plugin_manager

            self._tables = ControlTables(get_plugin_manager(), hidden_size=self.hidden_size,
                                         num_layers=self.num_layers, cache_size=self.plan_cache_size)
        return self._tables

    def forward_plan(self, fc: Any, device: torch.device) -> ForwardControls | None:
        """The per-layer controls of the forward pass ``fc`` (built once, on its first layer)."""
        if fc is self._fc:
            return self._plan
        self._fc, self._plan, self._bounds = fc, None, []
        metadata = fc.attn_metadata
        if not metadata or not isinstance(metadata, dict):  # profiling/dummy runs; DBO micro-batches
            return None
        first = next(iter(metadata.values()))
        qsl = getattr(first, "query_start_loc", None)
        if qsl is None:
            return None
        # rows of the persistent batch own consecutive tokens: query_start_loc[i]..[i + 1]
        bounds = qsl.tolist() if isinstance(qsl, torch.Tensor) else list(qsl)
        num_reqs = len(bounds) - 1
        control_of = {i: row.ctx.control for i, row in self.rows.items() if i < num_reqs and row.failed is None}
        specs, slots = token_slots(range(num_reqs), [bounds[i + 1] - bounds[i] for i in range(num_reqs)], control_of)
        self._plan = self.tables.forward(specs, slots, device)
        self._bounds = bounds
        if self._plan is not None and self._plan.failed:
            for i, spec in control_of.items():
                if spec in self._plan.failed:
                    self.rows[i].failed = self._plan.failed[spec]
        return self._plan

    def fail_tokens(self, token_idx: torch.Tensor, failure: HookFailure) -> None:
        """Fail the requests owning these tokens of the running forward pass (flattened rows)."""
        for t in set(token_idx.tolist()):
            row = self.rows.get(bisect.bisect_right(self._bounds, t) - 1)
            if row is not None and row.failed is None:
                row.failed = failure


_states: dict[int, tuple[dict, ControlState]] = {}
_lock = threading.Lock()


def state_for_key(sfc: dict) -> ControlState:
    with _lock:
        entry = _states.get(id(sfc))
        if entry is None or entry[0] is not sfc:
            entry = (sfc, ControlState())
            _states[id(sfc)] = entry
        return entry[1]


def state_for(vllm_config: Any) -> ControlState:
    """The state of the engine owning ``vllm_config`` (created on first use)."""
    return state_for_key(vllm_config.compilation_config.static_forward_context)


def current_state() -> tuple[Any, ControlState] | tuple[None, None]:
    """(forward context, state) of the running forward pass, or (None, None)."""
    from vllm.forward_context import get_forward_context, is_forward_context_available

    if not is_forward_context_available():
        return None, None
    fc = get_forward_context()
    entry = _states.get(id(fc.no_compile_layers))
    if entry is None or entry[0] is not fc.no_compile_layers:
        return fc, None
    return fc, entry[1]


# Requests failed in this worker (by the frontend's request id, ``REQUEST_ID_KEY``) since its last
# output. ``patches/worker_failures.py`` attaches them to the step's ``ModelRunnerOutput``, which
# vLLM's executor hands to the engine core's scheduler (pickled across processes by the
# multiprocess executor, as is); ``patches/scheduler_errors.py`` ends those requests there.
FAILURES_ATTR = "ttc_failures"
_failures: dict[str, HookFailure] = {}
_failures_lock = threading.Lock()


def record_failure(request_id: str, failure: HookFailure) -> None:
    # _failures is mutated in place, never rebound: patches/worker_failures.py holds it
    with _failures_lock:
        _failures[request_id] = failure


def take_failures() -> dict[str, HookFailure]:
    if not _failures:  # every engine step asks: no lock on the common path
        return {}
    with _failures_lock:
        taken = dict(_failures)
        _failures.clear()
        return taken


def attach_failures(output: Any) -> Any:
    """The worker's step output, carrying the failures recorded since the last one (a copy:
    vLLM reuses some outputs, e.g. its empty one); an async output carries them once resolved."""
    failures = take_failures()
    if not failures:
        return output
    if output is None:  # nothing goes to the scheduler this step: keep them for the next output
        with _failures_lock:
            _failures.update({k: v for k, v in failures.items() if k not in _failures})
        return None
    if not hasattr(output, "sampled_token_ids") and callable(getattr(output, "get_output", None)):
        resolve = output.get_output
        output.get_output = lambda: _with_failures(resolve(), failures)
        return output
    return _with_failures(output, failures)


def _with_failures(output: Any, failures: dict[str, HookFailure]) -> Any:
    carried = copy.copy(output)
    setattr(carried, FAILURES_ATTR, {**(getattr(output, FAILURES_ATTR, None) or {}), **failures})
    return carried
