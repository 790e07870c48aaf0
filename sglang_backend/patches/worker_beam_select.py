"""Each step of a ``ttc.beam`` group is decided by TokenBeam (worker).

AROUND ``BeamCoordinator._select_group(group, top_logprobs, top_tokens, tick)``: the one call,
at prefill and at every decode step, where SGLang turns the rows' top ``2 * rows`` raw
log-probabilities into the next tokens and the rows they continue (its ``joint_select``). For a
``ttc.beam`` group :func:`..beam_scheduler.select` answers instead, with the same contract; every
other group takes SGLang's path.
"""

from __future__ import annotations

from sglang.srt.plugins.hook_registry import HookType

TARGETS = ("sglang.srt.beam_search.coordinator.BeamCoordinator._select_group",)
HOOK_TYPE = HookType.AROUND


def hook(original_fn, self, group, top_logprobs, top_tokens, tick, *args, **kwargs):
    from .. import beam_scheduler

    if not beam_scheduler.is_ttc_group(group):
        return original_fn(self, group, top_logprobs, top_tokens, tick, *args, **kwargs)
    return beam_scheduler.select(group, top_logprobs, top_tokens, tick)
