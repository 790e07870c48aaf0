"""Per-token hidden-state control on SGLang's residual stream: plan → tensors → in-place update.

Per forward pass the worker builds one :class:`ForwardControls` from the batch's request ids
(``ForwardBatch.rids``) and token counts (1 per request when decoding, ``extend_seq_lens`` when
extending), asks ``ttc_prepare_controls`` what each distinct control does at each layer, and turns
that into per-layer tensors. After each listed decoder layer the update is applied **in place**
(SGLang refuses a new output tensor at its layer boundary), only at the tokens of requests whose
control touches that layer; every other token stays bit-identical.

The update itself is ``ttc_plugins.kernels.residual_control`` (Triton on CUDA, its PyTorch
reference elsewhere), the same op the vLLM backend calls. This module needs torch but not sglang.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import torch

from ttc_plugins.kernels import residual_control
from ttc_plugins.types import ControlPlan, ControlSpec

if TYPE_CHECKING:  # pragma: no cover
    from ttc_plugins.manager import TTCPluginManager


@dataclass
class LayerControl:
    """The tensors of one layer's update (slots not active at this layer map to −1)."""

    token_slot: torch.Tensor  # [N] int64
    vectors: torch.Tensor  # [S, H]
    scales: torch.Tensor  # [S]
    modes: torch.Tensor  # [S] int32
    preserve_norm: torch.Tensor  # [S] bool
    needs_state: bool  # some active slot reads the state (project mode or norm preservation)


@dataclass
class ForwardControls:
    """Everything one forward pass needs: the distinct specs, the per-token slot and per-layer
    tensors. Built once per forward, before the first layer runs."""

    specs: list[ControlSpec]
    token_slot: list[int]
    layers: dict[int, LayerControl]


def token_slots(
    rids: Sequence[str], counts: Sequence[int], control_of: Mapping[str, ControlSpec | None]
) -> tuple[list[ControlSpec], list[int]]:
    """Map the flattened batch's tokens to control slots: request ``rids[i]`` owns ``counts[i]``
    consecutive tokens; equal specs share a slot; uncontrolled requests map to −1."""
    if len(rids) != len(counts):
        raise ValueError(f"{len(rids)} request ids but {len(counts)} token counts")
    specs: list[ControlSpec] = []
    index: dict[str, int] = {}
    out: list[int] = []
    for rid, n in zip(rids, counts):
        spec = control_of.get(rid)
        if spec is None:
            slot = -1
        else:
            slot = index.get(spec.key)
            if slot is None:
                slot = index[spec.key] = len(specs)
                specs.append(spec)
        out.extend([slot] * int(n))
    return specs, out


def build_forward_controls(
    pm: "TTCPluginManager",
    specs: list[ControlSpec],
    token_slot: list[int],
    *,
    hidden_size: int,
    num_layers: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ForwardControls | None:
    """Ask ``ttc_prepare_controls`` for the plan and turn it into per-layer tensors; ``None``
    when no token is controlled."""
    if not specs or all(s < 0 for s in token_slot):
        return None
    plan = ControlPlan(specs=list(specs), hidden_size=hidden_size, num_layers=num_layers)
    pm.hook.ttc_prepare_controls(plan=plan)
    slots = torch.tensor(token_slot, dtype=torch.long)
    layers: dict[int, LayerControl] = {}
    for layer, by_slot in sorted(plan.vectors.items()):
        n_slots = len(specs)
        vectors = torch.zeros(n_slots, hidden_size, dtype=torch.float32)
        scales = torch.zeros(n_slots, dtype=torch.float32)
        modes = torch.zeros(n_slots, dtype=torch.int32)
        preserve = torch.zeros(n_slots, dtype=torch.bool)
        active = torch.zeros(n_slots, dtype=torch.bool)
        for slot, (vector, scale, mode, keep) in by_slot.items():
            vectors[slot] = torch.tensor(list(vector), dtype=torch.float32)
            scales[slot] = scale
            modes[slot] = mode
            preserve[slot] = keep
            active[slot] = True
        layer_slots = torch.where(slots >= 0, slots, torch.zeros_like(slots))
        layer_slots = torch.where((slots >= 0) & active[layer_slots], slots, torch.full_like(slots, -1))
        if not bool((layer_slots >= 0).any()):
            continue
        needs_state = bool(((modes == ControlPlan.MODE_PROJECT) & active).any() or (preserve & active).any())
        layers[layer] = LayerControl(
            token_slot=layer_slots.to(device),
            vectors=vectors.to(device=device, dtype=dtype),
            scales=scales.to(device),
            modes=modes.to(device),
            preserve_norm=preserve.to(device),
            needs_state=needs_state,
        )
    if not layers:
        return None
    return ForwardControls(specs=list(specs), token_slot=list(token_slot), layers=layers)


def control_delta(state: torch.Tensor | None, num_tokens: int, hidden_size: int, lc: LayerControl) -> torch.Tensor:
    """The update as an additive delta ``[N, H]`` (zero rows for untouched tokens).

    Add-only layers need no state (the delta is scale·v); a layer with project mode or norm
    preservation needs the full residual-stream value ``state`` (h = layer output + residual)."""
    op = residual_control
    if not lc.needs_state:
        delta = torch.zeros(num_tokens, hidden_size, dtype=lc.vectors.dtype, device=lc.vectors.device)
        op(delta, lc.token_slot, lc.vectors, lc.scales, lc.modes, lc.preserve_norm)
        return delta
    if state is None:
        raise ValueError("this layer's control reads the residual stream; pass its current value")
    new = state.clone()
    op(new, lc.token_slot, lc.vectors.to(new.dtype), lc.scales, lc.modes, lc.preserve_norm)
    return new - state
