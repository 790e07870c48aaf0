"""``ttc_process_logits`` on the step's logits, right before sampling (worker).

BEFORE ``ModelRunner.sample(logits_output, forward_batch)``: the batch's request ids are on the
forward batch (``ForwardBatch.rids``, one logits row per request), the logits are
``logits_output.next_token_logits``; edits are in place, opted-in rows only.
"""

from __future__ import annotations

from sglang.srt.plugins.hook_registry import HookType

from .. import _state

TARGETS = ("sglang.srt.model_executor.model_runner.ModelRunner.sample",)
HOOK_TYPE = HookType.BEFORE


def hook(self, *args, **kwargs):
    logits_output = args[0] if args else kwargs["logits_output"]
    forward_batch = args[1] if len(args) > 1 else kwargs["forward_batch"]
    _state.worker().process_logits(logits_output, forward_batch)
    return None
