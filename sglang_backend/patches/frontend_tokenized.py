"""Validate and resolve ``custom_params.ttc``; set the radix ``cache_salt`` (frontend).

AFTER ``TokenizerManager._create_tokenized_object``: the one place every generate request
(single, batch, parallel-sampling copies, session turns) becomes the object sent to the scheduler.
"""

from __future__ import annotations

from sglang.srt.plugins.hook_registry import HookType

from .. import _state

TARGETS = ("sglang.srt.managers.tokenizer_manager.TokenizerManager._create_tokenized_object",)
HOOK_TYPE = HookType.AFTER


def hook(result, self, obj, input_text, input_ids, *args, **kwargs):
    _state.frontend().on_tokenized(self, result, input_ids)
    return None
