"""Rebuild each request's context in the scheduler from its canonical JSON (worker).

AFTER ``Req.__init__``: every scheduler-side request, whatever path created it.
"""

from __future__ import annotations

from sglang.srt.plugins.hook_registry import HookType

from .. import _state

TARGETS = ("sglang.srt.managers.schedule_batch.Req.__init__",)
HOOK_TYPE = HookType.AFTER


def hook(result, self, *args, **kwargs):
    _state.worker().on_req_created(self)
    return None
