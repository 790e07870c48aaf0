"""``ttc_accept_token`` after each accepted token (worker).

AFTER ``Req.update_finish_state``: runs once per request per step after the new token is appended
and SGLang's own stop checks ran; a rejection finishes the request with reason ``"rejected"``.
"""

from __future__ import annotations

from sglang.srt.plugins.hook_registry import HookType

from .. import _state

TARGETS = ("sglang.srt.managers.schedule_batch.Req.update_finish_state",)
HOOK_TYPE = HookType.AFTER


def hook(result, self, *args, **kwargs):
    _state.worker().after_finish_check(self)
    return None
