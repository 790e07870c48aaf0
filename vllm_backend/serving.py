"""Search requests on vLLM's OpenAI-compatible server, run inside the API server process.

A ``/v1/completions`` or ``/v1/chat/completions`` request whose ``ttc`` section
(``"vllm_xargs": {"ttc": "<JSON>"}``) has a ``search`` object is not a generation: the search runs
with :func:`ttc_plugins.search.driver.arun_search` on the server's own engine client (no HTTP hop
per round; the engine batches the branches of every search in flight with everything else it
serves) on the prompt (chat: the chat-templated conversation, rendered by vLLM as for any chat
request) and the answer is a normal ``CompletionResponse`` / ``ChatCompletionResponse`` whose text
/ assistant message is the chosen path, plus the search report under ``"ttc": {"search": {...}}``.
Searches scored by ``prm`` use the reward models of ``additional_config.ttc.reward_models``
(second engines started in this process on first use). Reached through the patch in
:mod:`.patches.serving_search`.

Errors: invalid search settings are HTTP 400 naming the field (``ttc.search.width``,
``ttc.search.strategy``, ``ttc.search.scorer``, ``ttc.search.scorer_args.model``); request
features a search cannot honour (``stream``, ``n``/``best_of`` > 1, ``echo``, ``logprobs``,
``tools``, ``use_beam_search``, several or token-id prompts, ``ttc.control``/``ttc.decoding``
alongside ``ttc.search``) are 400s naming theirs. A server started with chunked prefill on refuses
seeded searches with a 400 that names the flags to start it with.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ttc_plugins.errors import RewardModelUnavailable, TTCParamError
from ttc_plugins.params import TTCParams
from ttc_plugins.runtime.wire import BEAM_REPORT_KEY
from ttc_plugins.search import serving as served

from . import compat, frontend

log = logging.getLogger("ttc_plugins.vllm_backend")

__all__ = ["SEARCH_ONLY_ON_COMPLETIONS", "create_search_chat_completion", "create_search_completion",
           "search_params_of"]

SEARCH_ONLY_ON_COMPLETIONS = frontend.SEARCH_ONLY_ON_COMPLETIONS


def _bad(field: str, message: str):
    from vllm.exceptions import VLLMValidationError

    return compat.create_error_response()(VLLMValidationError(f"{field}: {message}", parameter=field))


def surface_beam_report(response: Any) -> Any:
    """A token beam search (``ttc.beam``, run by the TTC scheduler) answers with its report in
    ``kv_transfer_params["ttc_beam"]``; the client gets it as ``ttc.beam`` (like ``ttc.search``)."""
    params = getattr(response, "kv_transfer_params", None)
    if not isinstance(params, dict) or BEAM_REPORT_KEY not in params:
        return response
    rest = {k: v for k, v in params.items() if k != BEAM_REPORT_KEY}
    response.kv_transfer_params = rest or None
    setattr(response, "ttc", {"beam": params[BEAM_REPORT_KEY]})
    return response


def beam_refusal(request: Any):
    """An error response when a token beam search (``ttc.beam``) asks for a feature it cannot
    honour on this server, else None: it answers once, when the search ends, so ``stream`` is
    refused rather than sent as one chunk."""
    extra = getattr(request, "vllm_xargs", None)
    if not extra or "ttc" not in extra or not getattr(request, "stream", False):
        return None
    try:
        params = frontend.parse_request_params(extra["ttc"])
    except TTCParamError:
        return None  # the ordinary path reports the invalid field
    if params is not None and params.beam is not None:
        return _bad("stream", "ttc.beam answers once, when the search ends; stream must be false")
    return None


def search_params_of(extra: Any) -> TTCParams | None:
    """The validated ``ttc`` section of ``vllm_xargs`` / ``extra_args`` when it asks for a search,
    else None (no ``ttc``, or ``ttc`` without ``search``: an ordinary request).

    :raises TTCParamError: the section is invalid (naming the field).
    """
    if not extra or "ttc" not in extra:
        return None
    return served.search_params_of(extra["ttc"], frontend.parse_request_params)


def _refusal(request: Any, params: TTCParams):
    """An error response for the first request feature a search cannot honour, else None."""
    bad = served.unsupported_feature(request, params)
    return _bad(*bad) if bad is not None else None


async def _sent_keys(raw_request: Any) -> set[str] | None:
    """The keys of the JSON body the client sent (vLLM's request models fill ``max_tokens`` in
    before validation, so the parsed request cannot say whether the client set it)."""
    if raw_request is None:
        return None
    try:
        body = await raw_request.json()  # starlette caches the body FastAPI already read
    except Exception:  # noqa: BLE001 - no body to read: fall back to the parsed request
        return None
    return set(body) if isinstance(body, dict) else None


async def _reward_models(serving: Any, scorer: Any) -> dict[str, Any]:
    """The reward model a search is scored by (``additional_config.ttc.reward_models``), started
    on the first search that names it; none for other searches."""
    from ttc_plugins.scoring.prm import ProcessRewardScorer

    from .config import parse_engine_config
    from .reward_model import served_reward_models

    if not isinstance(scorer, ProcessRewardScorer):
        return {}
    cfg = parse_engine_config(serving.engine_client.vllm_config.additional_config)
    configured = cfg.reward_models if cfg is not None else {}
    if scorer.params.model not in configured:
        known = ", ".join(sorted(configured)) or "none (start the server with additional_config.ttc.reward_models)"
        raise TTCParamError("ttc.search.scorer_args.model",
                            f"no reward model {scorer.params.model!r} on this server; configured: {known}")
    return await served_reward_models(configured, [scorer.params.model])


async def _run_search(serving: Any, request: Any, raw_request: Any, params: TTCParams, prompt: str,
                      request_id: str) -> Any:
    """Run the search of ``request`` on ``prompt`` on ``serving.engine_client``: ``(result, report,
    usage)`` or an ``ErrorResponse``. Shared by completions and chat."""
    UsageInfo = compat.usage_info_class()

    from ttc_plugins.manager import get_plugin_manager
    from ttc_plugins.search.driver import SearchPrompt, arun_search, resolve_search

    from .search_ops import CHUNKED_PREFILL_MESSAGE, AsyncVLLMEngineOps

    error = _refusal(request, params)
    if error is not None:
        return error
    params = served.with_request_limits(request, params, await _sent_keys(raw_request))
    pm = get_plugin_manager()
    try:
        _, _, scorer = resolve_search(pm, params.search)  # scorer name and scorer_args, before any engine call
    except TTCParamError as exc:
        return _bad(exc.field, exc.message)
    try:
        ops = AsyncVLLMEngineOps(serving.engine_client, pm=pm, reward_models=await _reward_models(serving, scorer))
    except TTCParamError as exc:
        return _bad(exc.field, exc.message)
    except RewardModelUnavailable as exc:
        status, err_type, message = served.search_failure(exc)
        return serving.create_error_response(message, err_type=err_type, status_code=status)
    except ValueError:
        return _bad("ttc.search", CHUNKED_PREFILL_MESSAGE)
    prompt_tokens = len(ops.encode(prompt))
    too_long = served.prompt_fits(prompt_tokens, serving.engine_client.vllm_config.model_config.max_model_len)
    if too_long is not None:
        return _bad(*too_long)
    search = params.search.to_json("strategy")
    try:
        (result,) = await arun_search(ops, [SearchPrompt(text=prompt, request_id=request_id)], search, pm=pm)
    except TTCParamError as exc:
        return _bad(exc.field, exc.message)
    except Exception as exc:
        log.exception("ttc: search request %s failed", request_id)
        status, err_type, message = served.search_failure(exc)
        return serving.create_error_response(message, err_type=err_type, status_code=status)
    report = served.report_of(result, ops, ops.block_size, params)
    generated = result.counters.tokens_generated
    usage = UsageInfo(prompt_tokens=prompt_tokens, completion_tokens=generated, total_tokens=prompt_tokens + generated)
    return result, report, usage


async def create_search_completion(serving: Any, request: Any, raw_request: Any, params: TTCParams) -> Any:
    """Run the search of a ``/v1/completions`` request; a ``CompletionResponse`` (text = the chosen
    path, ``ttc = {"search": report}``) or an ``ErrorResponse``."""
    from vllm.entrypoints.openai.completion.protocol import CompletionResponse, CompletionResponseChoice

    error = await serving._check_model(request)
    if error is not None:
        return error
    prompt, bad = served.single_text_prompt(request.prompt)
    if bad is not None:
        return _bad(*bad)
    request_id = f"cmpl-{serving._base_request_id(raw_request, getattr(request, 'request_id', None))}"
    ran = await _run_search(serving, request, raw_request, params, prompt, request_id)
    if not isinstance(ran, tuple):
        return ran
    result, report, usage = ran
    return CompletionResponse(
        id=request_id, created=int(time.time()), model=serving.models.model_name(None),
        choices=[CompletionResponseChoice(index=0, text=result.text, finish_reason=served.finish_reason(result))],
        usage=usage, ttc={"search": report},
    )


async def create_search_chat_completion(serving: Any, request: Any, raw_request: Any, params: TTCParams) -> Any:
    """Run the search of a ``/v1/chat/completions`` request on its chat-templated prompt (vLLM's own
    renderer: the server's template, ``chat_template_kwargs``, generation prompt); a
    ``ChatCompletionResponse`` whose assistant message is the chosen path, with the report under
    ``ttc.search``, or an ``ErrorResponse``."""
    from vllm.entrypoints.openai.chat_completion.protocol import (
        ChatCompletionResponse,
        ChatCompletionResponseChoice,
        ChatMessage,
    )

    error = _refusal(request, params)  # before rendering: n > 1 fails vLLM's own preflight
    if error is not None:
        return error
    rendered = await serving.render_chat_request(request)  # checks the model too
    if not isinstance(rendered, tuple):
        return rendered
    _, engine_inputs = rendered
    if len(engine_inputs) != 1:
        return _bad("messages", "a search request takes one conversation")
    parts = serving._extract_prompt_components(engine_inputs[0])
    prompt = parts.text if parts.text else serving.engine_client.renderer.get_tokenizer().decode(list(parts.token_ids))
    request_id = f"chatcmpl-{serving._base_request_id(raw_request, getattr(request, 'request_id', None))}"
    ran = await _run_search(serving, request, raw_request, params, prompt, request_id)
    if not isinstance(ran, tuple):
        return ran
    result, report, usage = ran
    message = ChatMessage(role="assistant", content=result.text)
    return ChatCompletionResponse(
        id=request_id, created=int(time.time()), model=serving.models.model_name(None),
        choices=[ChatCompletionResponseChoice(index=0, message=message, finish_reason=served.finish_reason(result))],
        usage=usage, ttc={"search": report},
    )
