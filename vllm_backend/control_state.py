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

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ttc_plugins.types import ControlPlan, ControlSpec, RequestContext

log = logging.getLogger("ttc_plugins.vllm_backend")

from .wire import RESOLVED_KEY  # noqa: F401  (re-exported for the logits processor)


@dataclass
class RowState:
    """One opted-in request in the persistent batch."""

    ctx: RequestContext
    output_token_ids: Sequence[int]
    has_decoding: bool
    #: output tokens already put to ``ttc_accept_token``; set once one was rejected
    judged: int = 0
    rejected: bool = False


@dataclass
class LayerPlan:
    """What one decoder layer does this forward: token rows, their compact slot, slot tables."""

    token_idx: torch.Tensor  # [M] long, rows of the flattened batch
    token_slot: torch.Tensor  # [M] long, index into the tables below
    vectors: torch.Tensor  # [S, H] float32
    scales: torch.Tensor  # [S] float32
    modes: torch.Tensor  # [S] int32 (ControlPlan.MODE_*)
    preserve_norm: torch.Tensor  # [S] bool


@dataclass
class AdapterPlan:
    """Tokens that go through one layer's TTC adapter this forward, with their own horizon."""

    token_idx: torch.Tensor  # [M] long, rows of the flattened batch
    horizon: torch.Tensor  # [M] int32, planning horizon T per token (> 0)
    scale: torch.Tensor  # [M] float32


@dataclass
class ForwardPlan:
    """Per layer: the steering plan and the TTC-adapter plan (either may be absent)."""

    steer: dict[int, LayerPlan]
    adapters: dict[int, AdapterPlan]


@dataclass
class _SpecTables:
    """Tensors of one set of distinct specs (cached across forwards): per layer, the slot map."""

    # layer -> (slot_map [num_specs] long: spec slot -> row of the tables or -1, vectors, scales, modes, preserve)
    layers: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = field(
        default_factory=dict
    )
    # layer -> (horizon per spec slot [num_specs] int32, 0 = not routed; scale per spec slot float32)
    horizons: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


class ControlState:
    def __init__(self, *, hidden_size: int | None = None, num_layers: int | None = None, plan_cache_size: int = 64):
        self.rows: dict[int, RowState] = {}
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.plan_cache_size = plan_cache_size
        self.processor: object | None = None
        self.controls_installed = False
        self.device: torch.device | None = None
        self._tables: OrderedDict[tuple[ControlSpec, ...], _SpecTables] = OrderedDict()
        self._fc: Any = None
        self._plan: ForwardPlan | None = None
        #: layer -> TTC adapter module hosted at that layer (loaded by model_wrap.install_controls)
        self.adapters: dict[int, torch.nn.Module] = {}
        self._pm = None

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
    def pm(self):
        if self._pm is None:
            from ttc_plugins.manager import get_plugin_manager

            self._pm = get_plugin_manager()
        return self._pm

    def _spec_tables(self, specs: tuple[ControlSpec, ...], device: torch.device) -> _SpecTables:
        tables = self._tables.get(specs)
        if tables is not None:
            self._tables.move_to_end(specs)
            return tables
        if self.hidden_size is None or self.num_layers is None:
            raise RuntimeError("ttc: control state has no model dimensions (controls not installed)")
        plan = ControlPlan(specs=list(specs), hidden_size=self.hidden_size, num_layers=self.num_layers)
        self.pm.hook.ttc_prepare_controls(plan=plan)
        tables = _SpecTables()
        for layer, by_slot in plan.vectors.items():
            slot_map = torch.full((len(specs),), -1, dtype=torch.long)
            vecs, scales, modes, pres = [], [], [], []
            for slot, (vector, scale, mode, preserve) in sorted(by_slot.items()):
                slot_map[slot] = len(vecs)
                vecs.append(torch.as_tensor(vector, dtype=torch.float32))
                scales.append(scale)
                modes.append(mode)
                pres.append(preserve)
            tables.layers[layer] = (
                slot_map.to(device),
                torch.stack(vecs).to(device),
                torch.tensor(scales, dtype=torch.float32, device=device),
                torch.tensor(modes, dtype=torch.int32, device=device),
                torch.tensor(pres, dtype=torch.bool, device=device),
            )
        for layer, by_slot in plan.horizons.items():
            horizon = torch.zeros(len(specs), dtype=torch.int32)
            scale = torch.zeros(len(specs), dtype=torch.float32)
            for slot, (T, sc) in by_slot.items():
                horizon[slot], scale[slot] = T, sc
            tables.horizons[layer] = (horizon, scale)
        self._tables[specs] = tables
        while len(self._tables) > self.plan_cache_size:
            self._tables.popitem(last=False)
        return tables

    def forward_plan(self, fc: Any, device: torch.device) -> ForwardPlan | None:
        """The per-layer plan of the forward pass ``fc`` (built once, on its first layer)."""
        if fc is self._fc:
            return self._plan
        self._fc, self._plan = fc, None
        metadata = fc.attn_metadata
        if not metadata or not isinstance(metadata, dict):  # profiling/dummy runs; DBO micro-batches
            return None
        first = next(iter(metadata.values()))
        qsl = getattr(first, "query_start_loc", None)
        if qsl is None:
            return None
        bounds = qsl.tolist() if isinstance(qsl, torch.Tensor) else list(qsl)
        num_reqs = len(bounds) - 1
        specs: dict[ControlSpec, int] = {}
        starts, ends, slots = [], [], []
        for index, row in self.rows.items():
            spec = row.ctx.control
            if spec is None or index >= num_reqs:
                continue
            slot = specs.setdefault(spec, len(specs))
            starts.append(bounds[index])
            ends.append(bounds[index + 1])
            slots.append(slot)
        if not specs:
            return None
        num_tokens = bounds[-1]
        token_slot = torch.full((num_tokens,), -1, dtype=torch.long)
        for s, e, slot in zip(starts, ends, slots):
            token_slot[s:e] = slot
        tables = self._spec_tables(tuple(specs), device)
        plan: dict[int, LayerPlan] = {}
        for layer, (slot_map, vecs, scales, modes, pres) in tables.layers.items():
            mapped = torch.where(token_slot >= 0, slot_map.cpu()[token_slot.clamp(min=0)], -1)
            idx = torch.nonzero(mapped >= 0).flatten()
            if idx.numel() == 0:
                continue
            plan[layer] = LayerPlan(idx.to(device), mapped[idx].to(device), vecs, scales, modes, pres)
        adapters: dict[int, AdapterPlan] = {}
        for layer, (horizon, scale) in tables.horizons.items():
            per_token = torch.where(token_slot >= 0, horizon[token_slot.clamp(min=0)], 0)
            idx = torch.nonzero(per_token > 0).flatten()
            if idx.numel() == 0:  # horizon 0 is "off": those tokens stay untouched
                continue
            slot_of = token_slot[idx]
            adapters[layer] = AdapterPlan(idx.to(device), per_token[idx].to(device), scale[slot_of].to(device))
        self._plan = ForwardPlan(plan, adapters) if (plan or adapters) else None
        return self._plan


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
