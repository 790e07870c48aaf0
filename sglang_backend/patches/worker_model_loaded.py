"""Install the residual-stream control on the decoder layers once the model is loaded (worker).

AFTER ``ModelRunner.load_model``: registers a torch forward hook on each decoder layer, so no
``--forward-hooks`` flag is needed (that flag's factories run the same ``register_forward_hook``).
"""

from __future__ import annotations

from sglang.srt.plugins.hook_registry import HookType

from .. import _state

TARGETS = ("sglang.srt.model_executor.model_runner.ModelRunner.load_model",)
HOOK_TYPE = HookType.AFTER


def hook(result, self, *args, **kwargs):
    _state.worker().on_model_loaded(self)
    return None
