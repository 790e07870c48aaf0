"""Hidden-state control inside vLLM's model, compile-safe.

Forward hooks are silently dropped under ``torch.compile``, so the control is part of the traced
model instead: :func:`register_models` re-registers supported architectures in vLLM's
``ModelRegistry`` (a documented API) with subclasses that, when the engine was started with
``additional_config={"ttc": {...}}``, give every decoder layer a subclass whose ``forward`` calls the
original and then the custom op ``torch.ops.ttc.residual_control(hidden_states, residual, layer)``.
Without the ``ttc`` section the subclass's ``__new__`` builds vLLM's own model class instead: plain
engines run exactly vLLM's model object.

The op is opaque to Dynamo/Inductor (it is a registered custom op that mutates its inputs), so it
runs at every forward in eager and compiled mode alike. At run time it looks up the engine's
:class:`~.worker.ControlState` through the forward context, and returns at once when no
scheduled request has a control: plain tokens are never touched.

vLLM decoder layers return ``(hidden_states, residual)`` whose sum is the residual stream. For the
tokens of controlled requests the op writes the steered stream into ``residual`` and zeros
``hidden_states``; the next layer's fused add-norm (and the final norm) then sees exactly the
steered stream. Other tokens are left bit-identical.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ttc_plugins.runtime.control_tables import apply_adapter, apply_steering
from ttc_plugins.runtime.faults import NONFINITE_STREAM

from . import worker
from .config import parse_engine_config

log = logging.getLogger("ttc_plugins.vllm_backend")

# architecture -> (vLLM module, class). Their decoder layers return (hidden_states, residual).
SUPPORTED_ARCHITECTURES: dict[str, tuple[str, str]] = {
    "LlamaForCausalLM": ("vllm.model_executor.models.llama", "LlamaForCausalLM"),
    "Qwen2ForCausalLM": ("vllm.model_executor.models.qwen2", "Qwen2ForCausalLM"),
    "Qwen3ForCausalLM": ("vllm.model_executor.models.qwen3", "Qwen3ForCausalLM"),
}
TESTED_ARCHITECTURES = ("LlamaForCausalLM",)


@torch.library.custom_op("ttc::residual_control", mutates_args=("hidden_states", "residual"))
def residual_control_op(hidden_states: torch.Tensor, residual: torch.Tensor, layer: int) -> None:
    """Apply each token's own request's control to the residual stream after ``layer``."""
    fc, state = worker.current_state()
    if state is None or not state.has_controls:
        return
    plan = state.forward_plan(fc, hidden_states.device)
    if plan is None:
        return
    steer = plan.steer.get(layer)
    if steer is not None:
        stream = _stream(hidden_states, residual, steer.token_idx)
        bad = apply_steering(stream, steer)  # non-finite rows come back unsteered: fail their requests
        _write_stream(hidden_states, residual, steer.token_idx, stream)
        if bad is not None:
            state.fail_tokens(steer.token_idx[bad], NONFINITE_STREAM)
    adapt = plan.adapters.get(layer)
    if adapt is not None:  # a request has one control: these tokens are not the steered ones
        stream = _stream(hidden_states, residual, adapt.token_idx)
        bad = apply_adapter(stream, adapt, state.adapters[layer])
        _write_stream(hidden_states, residual, adapt.token_idx, stream)
        if bad is not None:
            state.fail_tokens(adapt.token_idx[bad], NONFINITE_STREAM)


def _stream(hidden_states: torch.Tensor, residual: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The residual stream (float32) of the given token rows: vLLM keeps it as hidden + residual."""
    return hidden_states.index_select(0, idx).float() + residual.index_select(0, idx).float()


def _write_stream(hidden_states: torch.Tensor, residual: torch.Tensor, idx: torch.Tensor, stream: torch.Tensor) -> None:
    residual.index_copy_(0, idx, stream.to(residual.dtype))
    hidden_states.index_fill_(0, idx, 0)


@residual_control_op.register_fake
def _(hidden_states: torch.Tensor, residual: torch.Tensor, layer: int) -> None:
    return None


_layer_classes: dict[type, type] = {}


def _controlled_layer_class(base: type) -> type:
    cls = _layer_classes.get(base)
    if cls is None:

        def forward(self, *args: Any, **kwargs: Any):
            hidden_states, residual = super(cls, self).forward(*args, **kwargs)
            torch.ops.ttc.residual_control(hidden_states, residual, self._ttc_layer_index)
            return hidden_states, residual

        cls = type(f"TTCControlled{base.__name__}", (base,), {"forward": forward, "__module__": __name__})
        _layer_classes[base] = cls
    return cls


def install_controls(model: torch.nn.Module, vllm_config: Any) -> int:
    """Give every local decoder layer of ``model`` the control op; returns how many."""
    cfg = parse_engine_config(vllm_config.additional_config)
    hf = vllm_config.model_config.hf_text_config
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise RuntimeError(f"ttc: {type(model).__name__} has no model.layers; hidden-state control cannot attach")
    state = worker.state_for(vllm_config)
    if state.processor is None:
        raise RuntimeError(
            "ttc: hidden-state control is on (additional_config.ttc) but the TTC logits processor is not "
            "loaded in this engine; it maps tokens to requests. Install ttc-plugins as a package (entry point "
            "vllm.logits_processors) or pass logits_processors=['ttc_plugins.vllm_backend.logits:TTCLogitsProcessor']."
        )
    state.hidden_size = int(hf.hidden_size)
    state.num_layers = int(hf.num_hidden_layers)
    state.plan_cache_size = cfg.plan_cache_size if cfg is not None else 64
    state.adapters = _load_adapters(cfg, state, model) if cfg is not None else {}
    count = 0
    for index, layer in enumerate(layers):
        if not hasattr(layer, "forward") or type(layer).__name__ == "PPMissingLayer":
            continue
        layer.__class__ = _controlled_layer_class(type(layer))
        layer._ttc_layer_index = index
        count += 1
    state.controls_installed = True
    log.info("ttc: residual-stream control installed on %d decoder layers", count)
    return count


def _load_adapters(cfg: Any, state: worker.ControlState, model: torch.nn.Module) -> dict[int, torch.nn.Module]:
    """The TTC adapters of ``additional_config.ttc.ttc_layers``, float32 on the model's device."""
    if not cfg.ttc_layers:
        return {}
    from ttc_plugins.ttc_layer.hosting import load_hosted

    return load_hosted(cfg.ttc_layers, root="additional_config.ttc", hidden_size=state.hidden_size,
                       num_layers=state.num_layers, device=next(model.parameters()).device)


def _wrapped_model_class(arch: str, base: type) -> type:
    def __new__(cls, *, vllm_config: Any, prefix: str = "", **kwargs: Any):
        cfg = parse_engine_config(vllm_config.additional_config)
        if cfg is None or not cfg.controls:
            # Installed but unused: the engine gets vLLM's own model object, not a subclass
            # (Python skips cls.__init__ for an object that is not a cls instance).
            return base(vllm_config=vllm_config, prefix=prefix, **kwargs)
        return base.__new__(cls)

    def __init__(self, *, vllm_config: Any, prefix: str = "", **kwargs: Any) -> None:
        base.__init__(self, vllm_config=vllm_config, prefix=prefix, **kwargs)
        install_controls(self, vllm_config)

    return type(f"TTC{arch}", (base,), {"__new__": __new__, "__init__": __init__, "__module__": __name__,
                                       "__qualname__": f"TTC{arch}"})


def __getattr__(name: str) -> type:
    """``TTC<Architecture>`` classes, built on first access (vLLM imports them lazily by name)."""
    if name.startswith("TTC") and name[3:] in SUPPORTED_ARCHITECTURES:
        import importlib

        arch = name[3:]
        module_name, cls_name = SUPPORTED_ARCHITECTURES[arch]
        cls = _wrapped_model_class(arch, getattr(importlib.import_module(module_name), cls_name))
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def register_models() -> None:
    """Point the supported architectures at their TTC subclasses (idempotent)."""
    from vllm import ModelRegistry

    for arch in SUPPORTED_ARCHITECTURES:
        ModelRegistry.register_model(arch, f"{__name__}:TTC{arch}")
