"""Turn an admitted SGLang beam group into a ``ttc.beam`` group (worker).

AROUND ``BeamCoordinator.validate_and_init(req, recv_req)``: SGLang validates a ``beam_width``
request and attaches its ``BeamGroup`` (and neutralizes the leader's sampling params). When it
accepted the request and the request carries ``ttc.beam``, the group gets TokenBeam's rules
(:func:`..beam_scheduler.attach`); SGLang's own beam requests and refusals are untouched.
"""

from __future__ import annotations

from sglang.srt.plugins.hook_registry import HookType

from .. import _state

TARGETS = ("sglang.srt.beam_search.coordinator.BeamCoordinator.validate_and_init",)
HOOK_TYPE = HookType.AROUND


def hook(original_fn, self, req, recv_req, *args, **kwargs):
    user_params = req.sampling_params  # replaced by SGLang's neutral row params on success
    error = original_fn(self, req, recv_req, *args, **kwargs)
    if error is None:
        _state.worker().on_beam_admitted(self, req, user_params)
    return error
