"""Map the forward batch's tokens to requests and build this pass's control tensors (worker).

AROUND ``ModelRunner.forward``: before the model runs (outside any compiled region), after it the
per-pass state is dropped whatever happens.
"""

from __future__ import annotations

from sglang.srt.plugins.hook_registry import HookType

from .. import _state

TARGETS = ("sglang.srt.model_executor.model_runner.ModelRunner.forward",)
HOOK_TYPE = HookType.AROUND


def hook(original_fn, self, *args, **kwargs):
    forward_batch = args[0] if args else kwargs["forward_batch"]
    state = _state.worker()
    state.before_forward(forward_batch)
    try:
        return original_fn(self, *args, **kwargs)
    finally:
        state.after_forward(forward_batch)
