"""TTC adapters inside a Hugging Face transformers model (training and evaluation): forward hooks
on the chosen decoder layers add each token's gated adapter output to the layer's output, which is
what the engines do at the same place (``runtime.control_tables.apply_adapter``)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import torch

from .adapter import TTCAdapter


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The decoder-layer list of a causal LM (Llama-style ``model.layers``, GPT-2 ``transformer.h``,
    GPT-NeoX ``gpt_neox.layers``).

    :raises ValueError: the architecture keeps its layers elsewhere.
    """
    for path in ("model.layers", "transformer.h", "gpt_neox.layers"):
        obj = model
        for name in path.split("."):
            obj = getattr(obj, name, None)
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__} (looked for model.layers, "
                     "transformer.h, gpt_neox.layers)")


@contextmanager
def attached(model: Any, adapters: Mapping[int, TTCAdapter], horizon: int | torch.Tensor,
             scale: float = 1.0) -> Iterator[None]:
    """Within the block, every forward pass adds ``scale * adapter(hidden, T)`` after each decoder
    layer that has an adapter. ``horizon``: one int, or one per sequence of the batch ``[B]``
    (every token of a sequence plans over its sequence's horizon; 0 = off)."""
    layers = decoder_layers(model)
    for i in adapters:
        if not 0 <= i < len(layers):
            raise ValueError(f"decoder layer {i}: the model has {len(layers)} (0..{len(layers) - 1})")

    def hook_for(adapter: TTCAdapter):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            B, S, W = h.shape
            T = horizon if isinstance(horizon, torch.Tensor) else torch.full((B,), int(horizon))
            T = T.to(h.device, torch.int64)[:, None].expand(B, S).reshape(-1)
            flat = h.reshape(B * S, W)
            new = (flat + scale * adapter(flat, T).to(flat.dtype)).reshape(B, S, W)
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook

    handles = [layers[i].register_forward_hook(hook_for(a)) for i, a in sorted(adapters.items())]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
