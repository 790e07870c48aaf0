"""Keep returned logprobs those of the raw logits when a decoder edited them (worker).

AROUND ``Sampler.forward``: when ``ttc_process_logits`` edited this step's logits and the batch
returns logprobs, pass the unedited copy as ``logprob_logits`` (the argument SGLang already uses
for pre-watermark logprobs). Sampling itself uses the edited logits.
"""

from __future__ import annotations

from sglang.srt.plugins.hook_registry import HookType

from .. import _state

TARGETS = ("sglang.srt.layers.sampler.Sampler.forward",)
HOOK_TYPE = HookType.AROUND


def hook(original_fn, self, *args, **kwargs):
    raw = _state.worker().take_raw_logits()
    if raw is not None and kwargs.get("logprob_logits") is None:
        kwargs["logprob_logits"] = raw
    return original_fn(self, *args, **kwargs)
