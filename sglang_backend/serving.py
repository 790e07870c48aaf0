"""Search requests on SGLang's own OpenAI server (``python -m sglang.launch_server``), run inside the
HTTP server process against its ``TokenizerManager`` (no HTTP hop per round; the scheduler batches
the branches of every search in flight with everything else it serves).

A ``/v1/completions`` or ``/v1/chat/completions`` request whose ``custom_params.ttc`` (OpenAI
client: ``extra_body={"custom_params": {"ttc": {"search": {...}}}}``; the value may also be the
object as a JSON string) has a ``search`` object runs the search on its prompt (chat: the
conversation rendered by SGLang's own chat template, as for any chat request) and answers a normal
``CompletionResponse`` / ``ChatCompletionResponse`` whose text / assistant message is the chosen
path, plus the report under ``"ttc": {"search": {...}}``. Reached through the patch in
:mod:`.patches.frontend_serve_search`.

Errors: invalid search settings are HTTP 400 naming the field (``param`` and the message:
``ttc.search.strategy``, ``ttc.search.width``, ``ttc.search.scorer``, ...); so are request features a
search cannot honour (``stream``, ``n`` > 1, ``echo``, ``logprobs``, ``tools``, several prompts,
``ttc.control``/``ttc.decoding`` alongside ``ttc.search``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from ttc_plugins.errors import TTCParamError
from ttc_plugins.params import TTCParams
from ttc_plugins.types import EngineFacts
from ttc_plugins.search import serving as served

log = logging.getLogger("ttc_plugins.sglang_backend")

__all__ = ["beam_params_of", "handle_beam", "handle_search", "search_params_of"]


def beam_params_of(request: Any, facts: EngineFacts | None = None) -> TTCParams | None:
    """The validated ``custom_params.ttc`` of an OpenAI request when it asks for a token beam search
    (``ttc.beam``), else None; with ``facts`` (the server's), checked against them.

    :raises TTCParamError: the section is invalid (naming the field, e.g. ``ttc.beam.width``).
    """
    from ttc_plugins.manager import get_plugin_manager

    custom = getattr(request, "custom_params", None)
    if not isinstance(custom, dict) or not isinstance(custom.get("ttc"), dict) or custom["ttc"].get("beam") is None:
        return None
    return get_plugin_manager().parse_params(custom["ttc"], facts)


def _beam_refusal(request: Any) -> tuple[str, str] | None:
    """Request features a ``ttc.beam`` answer cannot honour: (field, message)."""
    from .frontend import check_beam

    if getattr(request, "stream", False):
        return "stream", "ttc.beam answers once, when the search ends; stream must be false"
    if getattr(request, "echo", False):
        return "echo", "not supported with ttc.beam"
    if getattr(request, "logprobs", None) not in (None, False, 0):
        return "logprobs", "ttc.beam reports each beam's cumulative_logprob; per-token logprobs are not returned"
    try:
        check_beam(getattr(request, "n", 1), getattr(request, "stop", None), False, None)
    except TTCParamError as exc:
        return exc.field, exc.message
    return None


async def handle_beam(serving: Any, request: Any, raw_request: Any, params: TTCParams, original_fn: Any) -> Any:
    """Serve a ``ttc.beam`` completion / chat completion through SGLang's own handler (its chat
    template, stop handling, usage); the answer is the best beam, plus every beam and the KV
    accounting under ``"ttc": {"beam": ...}`` (the vLLM server's shape)."""
    from fastapi.responses import ORJSONResponse
    from pydantic import BaseModel

    from .frontend import BEAM_SINK

    refused = _beam_refusal(request)
    if refused is not None:
        return bad(serving, *refused)
    sink: dict[str, Any] = {}
    token = BEAM_SINK.set(sink)
    try:
        response = await original_fn(serving, request, raw_request)
    finally:
        BEAM_SINK.reset(token)
    if not isinstance(response, BaseModel) or not hasattr(response, "choices") or len(sink) != 1:
        return response  # an error response (SGLang's 400s included) goes back as it is
    body = response.model_dump()
    body["ttc"] = {"beam": next(iter(sink.values()))}
    return ORJSONResponse(content=body)


def search_params_of(request: Any) -> TTCParams | None:
    """The validated ``custom_params.ttc`` of an OpenAI request when it asks for a search, else None
    (other request types have no ``custom_params``).

    :raises TTCParamError: the section is invalid (naming the field).
    """
    from ttc_plugins.manager import get_plugin_manager

    custom = getattr(request, "custom_params", None)
    if not isinstance(custom, dict) or "ttc" not in custom:
        return None
    return served.search_params_of(custom["ttc"], get_plugin_manager().parse_params)


def bad(serving: Any, field: str, message: str) -> Any:
    return serving.create_error_response(f"{field}: {message}", param=field)


async def _prompt_text(serving: Any, request: Any, raw_request: Any, is_chat: bool) -> tuple[str | None, Any]:
    """The text the search continues: a completion's prompt, or the chat-templated conversation
    (SGLang's own conversion, run off the loop as SGLang does); else an error response."""
    if not is_chat:
        prompt, refused = served.single_text_prompt(request.prompt)
        return prompt, bad(serving, *refused) if refused is not None else None
    loop = asyncio.get_running_loop()
    adapted, _ = await loop.run_in_executor(None, serving._convert_to_internal_request, request, raw_request)
    if isinstance(adapted.text, str) and adapted.text:
        return adapted.text, None
    ids = adapted.input_ids
    if not ids or not isinstance(ids[0], int):
        return None, bad(serving, "messages", "a search request takes one text conversation")
    return serving.tokenizer_manager.tokenizer.decode(list(ids)), None


async def handle_search(serving: Any, request: Any, raw_request: Any, params: TTCParams) -> Any:
    """Run the search of ``request`` (completions or chat) inside the server; the response."""
    from fastapi.responses import ORJSONResponse
    from sglang.srt.entrypoints.openai.protocol import ChatCompletionRequest, UsageInfo

    from ttc_plugins.manager import get_plugin_manager
    from ttc_plugins.search.driver import SearchPrompt, arun_search, resolve_search

    from .search_ops import AsyncSGLangEngineOps

    refused = served.unsupported_feature(request, params)
    if refused is not None:
        return bad(serving, *refused)
    params = served.with_request_limits(request, params)
    pm = get_plugin_manager()
    try:
        _, _, scorer = resolve_search(pm, params.search)
    except TTCParamError as exc:
        return bad(serving, exc.field, exc.message)
    is_chat = isinstance(request, ChatCompletionRequest)
    try:
        prompt, error = await _prompt_text(serving, request, raw_request, is_chat)
    except ValueError as exc:  # what SGLang's own handler answers with a 400 (bad messages, template)
        return serving.create_error_response(str(exc))
    if error is not None:
        return error
    request_id = f"{'chatcmpl' if is_chat else 'cmpl'}-{uuid.uuid4().hex}"
    ops = AsyncSGLangEngineOps(serving.tokenizer_manager, pm=pm, reward_models=await _reward_models(scorer))
    prompt_tokens = len(ops.encode(prompt))
    too_long = served.prompt_fits(prompt_tokens, getattr(serving.tokenizer_manager, "context_len", None))
    if too_long is not None:
        return bad(serving, *too_long)
    try:
        (result,) = await arun_search(ops, [SearchPrompt(text=prompt, request_id=request_id)],
                                      params.search.to_json("strategy"), pm=pm)
    except TTCParamError as exc:
        return bad(serving, exc.field, exc.message)
    except Exception as exc:
        log.exception("ttc: search request %s failed", request_id)
        status, err_type, message = served.search_failure(exc)
        return serving.create_error_response(message, err_type=err_type, status_code=status)
    generated = result.counters.tokens_generated
    usage = UsageInfo(prompt_tokens=prompt_tokens, completion_tokens=generated, total_tokens=prompt_tokens + generated)
    body = _response(request, request_id, result, usage, is_chat).model_dump()
    body["ttc"] = {"search": served.report_of(result, ops, ops.page_size, params)}
    return ORJSONResponse(content=body)


def _response(request: Any, request_id: str, result: Any, usage: Any, is_chat: bool) -> Any:
    from sglang.srt.entrypoints.openai.protocol import (
        ChatCompletionResponse,
        ChatCompletionResponseChoice,
        ChatMessage,
        CompletionResponse,
        CompletionResponseChoice,
    )

    finish = served.finish_reason(result)
    if is_chat:
        choice = ChatCompletionResponseChoice(index=0, message=ChatMessage(role="assistant", content=result.text),
                                              finish_reason=finish)
        return ChatCompletionResponse(id=request_id, created=int(time.time()), model=request.model,
                                      choices=[choice], usage=usage)
    choice = CompletionResponseChoice(index=0, text=result.text, finish_reason=finish)
    return CompletionResponse(id=request_id, created=int(time.time()), model=request.model, choices=[choice],
                              usage=usage)


async def _reward_models(scorer: Any) -> dict[str, Any]:
    """Reward models served beside this server, for searches scored by ``prm``."""
    from ttc_plugins.scoring.prm import ProcessRewardScorer

    if not isinstance(scorer, ProcessRewardScorer):
        return {}
    from .reward_model import served_reward_models

    return await served_reward_models()
