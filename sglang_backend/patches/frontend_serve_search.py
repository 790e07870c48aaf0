"""Serve search requests on SGLang's OpenAI server (``/v1/completions``, ``/v1/chat/completions``).

AROUND ``OpenAIServingBase.handle_request``: the one entry of every OpenAI handler in the HTTP server
process, with the parsed request (``custom_params``) and the handler (its ``tokenizer_manager``, chat
template conversion and error responses). A request whose ``custom_params.ttc`` has a ``search``
object is answered by :func:`..serving.handle_search`; one with a ``beam`` object (token beam search,
run by the scheduler) goes through the original handler inside :func:`..serving.handle_beam`, which
checks what a beam answer cannot honour (400 naming the field) and adds the report to the answer;
every other request (and every other OpenAI endpoint: embeddings, classify, ...) takes the original
path untouched.
"""

from __future__ import annotations

from sglang.srt.plugins.hook_registry import HookType

TARGETS = ("sglang.srt.entrypoints.openai.serving_base.OpenAIServingBase.handle_request",)
HOOK_TYPE = HookType.AROUND


def hook(original_fn, self, request, raw_request, *args, **kwargs):
    from ttc_plugins.errors import TTCParamError

    from .. import _state, serving

    try:
        params = serving.search_params_of(request)
        beam = (serving.beam_params_of(request, _state.frontend().facts(self.tokenizer_manager))
                if params is None else None)
    except TTCParamError as exc:
        return _answer(serving.bad(self, exc.field, exc.message))
    if beam is not None:
        return serving.handle_beam(self, request, raw_request, beam, original_fn)
    if params is None:
        return original_fn(self, request, raw_request, *args, **kwargs)
    return serving.handle_search(self, request, raw_request, params)


async def _answer(response):
    return response  # handle_request is awaited: hand back a coroutine either way
