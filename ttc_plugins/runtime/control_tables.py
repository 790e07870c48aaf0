"""A forward pass's hidden-state controls as tensors: plan → per-layer tables → in-place update.

Per forward pass a backend knows which request owns which tokens of the flattened batch and each
request's resolved control. :func:`token_slots` maps tokens to control slots (equal controls share
one), :class:`ControlTables` asks ``ttc_prepare_controls`` what each distinct control does at each
layer (steering vectors, TTC-adapter horizons) and caches the resulting tensors per set of
controls, and :meth:`ControlTables.forward` gives, per layer, only the tokens that layer touches.
:func:`apply_steering` and :func:`apply_adapter` update those tokens' residual stream; every other
token stays bit-identical. The engine seams only find the stream and write it back.

The steering update is ``ttc_plugins.kernels.residual_control`` (Triton on CUDA, its PyTorch
reference elsewhere). Needs torch, not an engine.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Hashable, Mapping, Sequence

import torch

from ttc_plugins.kernels import residual_control
from ttc_plugins.types import ControlPlan, ControlSpec

from . import faults
from .faults import HookFailure

if TYPE_CHECKING:  # pragma: no cover
    from ttc_plugins.manager import TTCPluginManager


@dataclass
class SteerTable:
    """One layer's steering this forward: the token rows it touches and their slot's vector."""

    token_idx: torch.Tensor  # [M] long, rows of the flattened batch
    token_slot: torch.Tensor  # [M] long, row of the tables below
    vectors: torch.Tensor  # [S, H] float32
    scales: torch.Tensor  # [S] float32
    modes: torch.Tensor  # [S] int32 (ControlPlan.MODE_*)
    preserve_norm: torch.Tensor  # [S] bool
    #: some slot reads the stream (project mode or norm preservation); add-only needs no state
    needs_state: bool


@dataclass
class AdapterTable:
    """Tokens that go through one layer's TTC adapter this forward, each with its horizon."""

    token_idx: torch.Tensor  # [M] long
    horizon: torch.Tensor  # [M] int32, planning horizon T (> 0)
    scale: torch.Tensor  # [M] float32


@dataclass
class ForwardControls:
    """Per layer: the steering and TTC-adapter tables of one forward pass (either may be absent;
    a request has one control, so the two never touch the same token)."""

    num_tokens: int
    steer: dict[int, SteerTable] = field(default_factory=dict)
    adapters: dict[int, AdapterTable] = field(default_factory=dict)
    #: controls that failed to plan (their hook raised or wrote unsafe values): their tokens are
    #: left untouched and the backend fails the requests that carry them (:mod:`.faults`)
    failed: dict[ControlSpec, HookFailure] = field(default_factory=dict)


def token_slots(
    owners: Sequence[Hashable], counts: Sequence[int], control_of: Mapping[Hashable, ControlSpec | None]
) -> tuple[list[ControlSpec], torch.Tensor]:
    """Map the flattened batch's tokens to control slots: ``owners[i]`` (a request id or batch row)
    owns ``counts[i]`` consecutive tokens; equal controls share a slot; tokens of requests without
    a control map to −1. Returns the distinct controls and the [N] long slot per token."""
    if len(owners) != len(counts):
        raise ValueError(f"{len(owners)} requests but {len(counts)} token counts")
    specs: list[ControlSpec] = []
    index: dict[ControlSpec, int] = {}
    per_owner = []
    for owner in owners:
        spec = control_of.get(owner)
        slot = -1 if spec is None else index.get(spec)
        if slot is None:
            slot = index[spec] = len(specs)
            specs.append(spec)
        per_owner.append(slot)
    slots = torch.repeat_interleave(torch.tensor(per_owner, dtype=torch.long),
                                    torch.tensor([int(c) for c in counts], dtype=torch.long))
    return specs, slots


@dataclass
class _Tables:
    """Tensors of one set of distinct controls, per layer, indexed by spec slot."""

    # layer -> (slot -> row of the vector table or -1 [S] long on CPU, vectors, scales, modes, preserve, needs_state)
    steer: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool]]
    # layer -> (horizon per slot [S] int32, 0 = not routed; scale per slot [S] float32), on CPU
    horizons: dict[int, tuple[torch.Tensor, torch.Tensor]]
    # spec -> why it could not be planned
    failed: dict[ControlSpec, HookFailure] = field(default_factory=dict)


class ControlTables:
    """Builds a forward pass's :class:`ForwardControls`; the tables of the last ``cache_size`` sets
    of distinct controls are kept (a decode step reuses its batch's controls)."""

    def __init__(self, pm: "TTCPluginManager", *, hidden_size: int, num_layers: int, cache_size: int = 64):
        self.pm = pm
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[tuple[ControlSpec, ...], str], _Tables] = OrderedDict()

    def forward(self, specs: Sequence[ControlSpec], token_slot: torch.Tensor,
                device: torch.device | str = "cpu") -> ForwardControls | None:
        """The per-layer tables for tokens mapped to ``specs`` by ``token_slot`` ([N] long, −1 =
        no control; see :func:`token_slots`); ``None`` when no layer touches any token and no
        control failed to plan."""
        if not specs or not bool((token_slot >= 0).any()):
            return None
        token_slot = token_slot.cpu()
        tables = self._tables(tuple(specs), torch.device(device))
        out = ForwardControls(num_tokens=int(token_slot.numel()), failed=dict(tables.failed))
        safe = token_slot.clamp(min=0)
        for layer, (slot_map, vectors, scales, modes, preserve, needs_state) in tables.steer.items():
            mapped = torch.where(token_slot >= 0, slot_map[safe], -1)
            idx = torch.nonzero(mapped >= 0).flatten()
            if idx.numel():
                out.steer[layer] = SteerTable(idx.to(device), mapped[idx].to(device), vectors, scales, modes,
                                              preserve, needs_state)
        for layer, (horizon, scale) in tables.horizons.items():
            per_token = torch.where(token_slot >= 0, horizon[safe], 0)
            idx = torch.nonzero(per_token > 0).flatten()  # horizon 0 is "off": those tokens stay untouched
            if idx.numel():
                out.adapters[layer] = AdapterTable(idx.to(device), per_token[idx].to(device),
                                                   scale[token_slot[idx]].to(device))
        return out if (out.steer or out.adapters or out.failed) else None

    def _tables(self, specs: tuple[ControlSpec, ...], device: torch.device) -> _Tables:
        key = (specs, str(device))
        tables = self._cache.get(key)
        if tables is not None:
            self._cache.move_to_end(key)
            return tables
        plan = ControlPlan(specs=list(specs), hidden_size=self.hidden_size, num_layers=self.num_layers)
        failed = faults.prepare_controls(self.pm, plan)
        tables = _Tables(steer={}, horizons={}, failed={specs[slot]: why for slot, why in failed.items()})
        for layer, by_slot in sorted(plan.vectors.items()):
            slot_map = torch.full((len(specs),), -1, dtype=torch.long)
            vectors, scales, modes, preserve = [], [], [], []
            for slot, (vector, scale, mode, keep) in sorted(by_slot.items()):
                slot_map[slot] = len(vectors)
                vectors.append(torch.as_tensor(vector, dtype=torch.float32))
                scales.append(scale)
                modes.append(mode)
                preserve.append(keep)
            needs_state = any(m == ControlPlan.MODE_PROJECT or k for m, k in zip(modes, preserve))
            tables.steer[layer] = (
                slot_map,
                torch.stack(vectors).to(device),
                torch.tensor(scales, dtype=torch.float32, device=device),
                torch.tensor(modes, dtype=torch.int32, device=device),
                torch.tensor(preserve, dtype=torch.bool, device=device),
                needs_state,
            )
        for layer, by_slot in sorted(plan.horizons.items()):
            horizon = torch.zeros(len(specs), dtype=torch.int32)
            scale = torch.zeros(len(specs), dtype=torch.float32)
            for slot, (steps, sc) in by_slot.items():
                horizon[slot], scale[slot] = steps, sc
            tables.horizons[layer] = (horizon, scale)
        self._cache[key] = tables
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return tables


def apply_steering(stream: torch.Tensor, table: SteerTable) -> torch.Tensor | None:
    """Steer ``stream`` in place: the [M, H] residual-stream rows ``table.token_idx`` selected.
    Returns the [M] bool mask of rows whose result was not finite (``None`` when all are): they
    are left unsteered (:func:`.faults.restore_nonfinite`) and the backend fails their requests."""
    original = stream.clone()
    residual_control(stream, table.token_slot, table.vectors.to(stream.dtype), table.scales, table.modes,
                     table.preserve_norm)
    return faults.restore_nonfinite(stream, original)


def apply_adapter(stream: torch.Tensor, table: AdapterTable, adapter: Any) -> torch.Tensor | None:
    """Add each token's TTC-adapter output (its own horizon, times its scale) to the [M, H] rows.
    Returns the mask of rows whose result was not finite, or ``None`` (left as they were; see above)."""
    original = stream.clone()
    stream += table.scale[:, None].to(stream.dtype) * adapter(stream, table.horizon).to(stream.dtype)
    return faults.restore_nonfinite(stream, original)
