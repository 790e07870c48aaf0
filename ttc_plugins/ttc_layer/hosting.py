"""The TTC adapters an engine hosts, loaded where its model is: one rule for both backends.

An engine's settings map decoder-layer indices to adapter files (vLLM
``additional_config.ttc.ttc_layers``, SGLang ``TTC_SGLANG_CONFIG`` ``ttc_layers``). The file
metadata was checked when the settings were parsed (:meth:`EngineConfigBase.check_ttc_layers`);
here, with the model's shape known, a file for another hidden size or layer count, or a layer the
model does not have, stops the engine at start with the settings key named.
"""

from __future__ import annotations

import logging
from typing import Mapping

import torch

from .adapter import TTCAdapter
from .config import base_model_mismatch, read_adapter_file

log = logging.getLogger("ttc_plugins.ttc_layer")


def load_hosted(ttc_layers: Mapping[int, str], *, root: str, hidden_size: int, num_layers: int,
                device: torch.device | str) -> dict[int, TTCAdapter]:
    """Layer -> adapter (float32, frozen, eval mode) on ``device``.

    :param root: the settings key the layers sit under, for messages (``<root>.ttc_layers.<i>``).
    :raises ValueError: naming ``<root>.ttc_layers.<layer>`` and what does not fit.
    """
    adapters: dict[int, TTCAdapter] = {}
    for layer, path in sorted(ttc_layers.items()):
        key = f"{root}.ttc_layers.{layer}"
        if not 0 <= layer < num_layers:
            raise ValueError(f"{key}: the model has {num_layers} decoder layers (0..{num_layers - 1})")
        why = base_model_mismatch(read_adapter_file(path), hidden_size=hidden_size, num_hidden_layers=num_layers)
        if why is not None:
            raise ValueError(f"{key}: {why}")
        adapters[layer] = TTCAdapter.load(path, device=device, layer=layer).eval().requires_grad_(False)
    if adapters:
        log.info("ttc-plugins: TTC adapters at decoder layers %s", sorted(adapters))
    return adapters
