"""Report finished opted-in requests: ``ttc_kv_report``, ``ttc_request_finished`` (frontend).

AROUND ``TokenizerManager._stream_one_response``: the async generator that yields every output
dict of one request (``meta_info`` carries ``cached_tokens``, ``prompt_tokens``, ``finish_reason``).
"""

from __future__ import annotations

from sglang.srt.plugins.hook_registry import HookType

from .. import _state

TARGETS = ("sglang.srt.managers.tokenizer_manager.TokenizerManager._stream_one_response",)
HOOK_TYPE = HookType.AROUND


def hook(original_fn, self, *args, **kwargs):
    obj = kwargs.get("obj", args[0] if args else None)
    rid = getattr(obj, "rid", None)
    state = _state.frontend()
    if not state.tracked(rid):
        return original_fn(self, *args, **kwargs)

    async def stream():
        try:
            async for out in original_fn(self, *args, **kwargs):
                state.on_output(self, rid, out)
                yield out
        finally:
            state.forget(rid)

    return stream()
