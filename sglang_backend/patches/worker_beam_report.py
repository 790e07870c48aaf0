"""Send a ``ttc.beam`` search's report to the frontend once, whole (worker).

AROUND ``SchedulerOutputStreamer.is_request_level_customized_info_key(key)``: SGLang's
per-request ``Req.customized_info`` travels scheduler -> detokenizer -> tokenizer manager into
``meta_info`` (pickled, any JSON value); by default every key is a per-token list sliced along
the output, and a subclass decides which keys are request-level (sent once, when the request
finished). The report key (``ttc_plugins.runtime.wire.BEAM_REPORT_KEY``) is request-level; every other key keeps
SGLang's answer.
"""

from __future__ import annotations

from sglang.srt.plugins.hook_registry import HookType

from ttc_plugins.runtime.wire import BEAM_REPORT_KEY

TARGETS = (
    "sglang.srt.managers.scheduler_components.output_streamer."
    "SchedulerOutputStreamer.is_request_level_customized_info_key",
)
HOOK_TYPE = HookType.AROUND


def hook(original_fn, self, key, *args, **kwargs):
    if key == BEAM_REPORT_KEY:
        return True
    return original_fn(self, key, *args, **kwargs)
