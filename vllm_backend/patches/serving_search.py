"""Patch: ``OpenAIServingCompletion.create_completion``, ``OpenAIServingChat.create_chat_completion``
.

Why: a request carrying ``ttc.search`` is a whole search (many engine requests over several
rounds), not one generation, and it must run inside the API server against the server's in-process
engine client. vLLM has no seam for a request handler that reaches the engine: endpoint plugins
(``vllm.endpoint_plugins``) may replace routes but must not open engine access paths, and only
load when allow-listed in ``VLLM_PLUGINS`` (which then also filters the general plugin).
How: ``create_completion`` routes requests whose ``vllm_xargs.ttc`` has a ``search`` object to
:func:`..serving.create_search_completion` (invalid settings -> HTTP 400 naming the field); every
other request takes the original path untouched. ``create_chat_completion`` does the same for chat
requests (:func:`..serving.create_search_chat_completion`, on the chat-templated prompt).
A ``ttc.search`` sent as a single engine request (``LLM.generate`` or any other path) is refused
by the runtime (the engine's facts list it as refused; :mod:`.input_processor`), so a search is
never silently run as a plain generation. See LEDGER.md.
"""

from __future__ import annotations

import functools

from ttc_plugins.errors import TTCParamError

TARGETS = (
    "vllm.entrypoints.openai.completion.serving.OpenAIServingCompletion.create_completion",
    "vllm.entrypoints.openai.chat_completion.serving.OpenAIServingChat.create_chat_completion",
)
_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    from vllm.entrypoints.openai.chat_completion.serving import OpenAIServingChat
    from vllm.entrypoints.openai.completion.serving import OpenAIServingCompletion

    from .. import serving

    original_completion = OpenAIServingCompletion.create_completion
    original_chat = OpenAIServingChat.create_chat_completion

    async def route(original, run_search, self, request, raw_request, *args, **kwargs):
        try:
            params = serving.search_params_of(getattr(request, "vllm_xargs", None))
        except TTCParamError as exc:
            return serving._bad(exc.field, exc.message)
        if params is not None:
            return await run_search(self, request, raw_request, params)
        refused = serving.beam_refusal(request)
        if refused is not None:
            return refused
        return serving.surface_beam_report(await original(self, request, raw_request, *args, **kwargs))

    @functools.wraps(original_completion)
    async def create_completion(self, request, raw_request=None):
        return await route(original_completion, serving.create_search_completion, self, request, raw_request)

    @functools.wraps(original_chat)
    async def create_chat_completion(self, request, raw_request=None, *args, **kwargs):
        return await route(original_chat, serving.create_search_chat_completion, self, request, raw_request,
                           *args, **kwargs)

    OpenAIServingCompletion.create_completion = create_completion
    OpenAIServingChat.create_chat_completion = create_chat_completion
    OpenAIServingCompletion._ttc_search_patched = True
    _applied = True
