"""Refuse ``custom_logit_processor`` payloads (pickles) before SGLang can unpickle them (frontend).

BEFORE ``TokenizerManager._validate_one_request``: runs for every generate request before it is
sent to the scheduler, where ``CustomLogitProcessor.from_str`` would ``dill.loads`` the bytes.
"""

from __future__ import annotations

from sglang.srt.plugins.hook_registry import HookType

from .. import _state

TARGETS = ("sglang.srt.managers.tokenizer_manager.TokenizerManager._validate_one_request",)
HOOK_TYPE = HookType.BEFORE


def hook(self, obj, *args, **kwargs):
    _state.frontend().check_custom_logit_processor(obj)
    return None
