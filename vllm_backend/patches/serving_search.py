"""Patch: ``OpenAIServingCompletion.create_completion``, ``OpenAIServingChat.create_chat_completion``
and (a guard) ``InputProcessor.process_inputs``.

Why: a request carrying ``ttc.search`` is a whole search (many engine requests over several
rounds), not one generation, and it must run inside the API server against the server's in-process
engine client. vLLM has no seam for a request handler that reaches the engine: endpoint plugins
(``vllm.endpoint_plugins``) may replace routes but must not open engine access paths, and only
load when allow-listed in ``VLLM_PLUGINS`` (which then also filters the general plugin).
How: ``create_completion`` routes requests whose ``vllm_xargs.ttc`` has a ``search`` object to
:func:`..serving.create_search_completion` (invalid settings -> HTTP 400 naming the field); every
other request takes the original path untouched. ``create_chat_completion`` does the same for chat
requests (:func:`..serving.create_search_chat_completion`, on the chat-templated prompt).
``process_inputs`` refuses ``ttc.search``
on a single engine request (``LLM.generate`` or any other path), so a search is never silently
run as a plain generation. See LEDGER.md.
"""

from __future__ import annotations

import functools

from ttc_plugins.errors import TTCParamError

TARGETS = (
    "vllm.entrypoints.openai.completion.serving.OpenAIServingCompletion.create_completion",
    "vllm.entrypoints.openai.chat_completion.serving.OpenAIServingChat.create_chat_completion",
    "vllm.v1.engine.input_processor.InputProcessor.process_inputs",
)
_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    from vllm.entrypoints.openai.chat_completion.serving import OpenAIServingChat
    from vllm.entrypoints.openai.completion.serving import OpenAIServingCompletion
    from vllm.exceptions import VLLMValidationError
    from vllm.sampling_params import SamplingParams
    from vllm.v1.engine.input_processor import InputProcessor

    from .. import serving

    original_completion = OpenAIServingCompletion.create_completion
    original_chat = OpenAIServingChat.create_chat_completion
    original_process = InputProcessor.process_inputs

    @functools.wraps(original_completion)
    async def create_completion(self, request, raw_request=None):
        try:
            params = serving.search_params_of(getattr(request, "vllm_xargs", None))
        except TTCParamError as exc:
            return serving._bad(exc.field, exc.message)
        if params is None:
            refused = serving.beam_refusal(request)
            if refused is not None:
                return refused
            return serving.surface_beam_report(await original_completion(self, request, raw_request))
        return await serving.create_search_completion(self, request, raw_request, params)

    @functools.wraps(original_chat)
    async def create_chat_completion(self, request, raw_request=None, *args, **kwargs):
        try:
            params = serving.search_params_of(getattr(request, "vllm_xargs", None))
        except TTCParamError as exc:
            return serving._bad(exc.field, exc.message)
        if params is None:
            refused = serving.beam_refusal(request)
            if refused is not None:
                return refused
            return serving.surface_beam_report(await original_chat(self, request, raw_request, *args, **kwargs))
        return await serving.create_search_chat_completion(self, request, raw_request, params)

    @functools.wraps(original_process)
    def process_inputs(self, request_id, prompt, params, *args, **kwargs):
        extra = params.extra_args if isinstance(params, SamplingParams) else None
        if extra and "ttc" in extra:
            try:
                wants_search = serving.search_params_of(extra) is not None
            except TTCParamError:
                wants_search = False  # the input-processor patch reports the invalid field
            if wants_search:
                raise VLLMValidationError(f"ttc.search: {serving.SEARCH_ONLY_ON_COMPLETIONS}",
                                          parameter="ttc.search")
        return original_process(self, request_id, prompt, params, *args, **kwargs)

    OpenAIServingCompletion.create_completion = create_completion
    OpenAIServingChat.create_chat_completion = create_chat_completion
    InputProcessor.process_inputs = process_inputs
    OpenAIServingCompletion._ttc_search_patched = True
    _applied = True
