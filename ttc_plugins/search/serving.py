"""What every OpenAI-compatible server does with a search request, whatever the engine: recognise
it, refuse what a search cannot honour (naming the field), and turn a
:class:`~ttc_plugins.search.result.SearchResult` into the answer's text, finish reason, usage and
report. The backends (``vllm_backend.serving``, ``sglang_backend.serving``) keep only their engine's
request and response types.
"""

from __future__ import annotations

from dataclasses import replace
from http import HTTPStatus
from typing import Any, Callable

from ..params import TTCParams, decode_json_text
from .result import SearchResult

__all__ = ["finish_reason", "prompt_fits", "report_of", "search_failure", "search_params_of", "single_text_prompt",
           "unsupported_feature", "with_request_limits"]


def search_params_of(raw: Any, parse: Callable[[Any], TTCParams | None]) -> TTCParams | None:
    """The validated ``ttc`` section (``raw``: an object, or the object as a JSON string) when it
    asks for a search, else None (no ``ttc``, or ``ttc`` without ``search``: an ordinary request).

    :raises TTCParamError: the section is invalid (naming the field).
    """
    if isinstance(raw, str):
        raw = decode_json_text(raw)
    if not isinstance(raw, dict) or raw.get("search") is None:
        return None  # not a search (an invalid non-search section is the ordinary path's to report)
    params = parse(raw)
    return params if params is not None and params.search is not None else None


def unsupported_feature(request: Any, params: TTCParams) -> tuple[str, str] | None:
    """``(field, why)`` for the first request feature a search cannot honour, else None. Works on
    completions and chat requests of both servers (a field a request type lacks is skipped)."""
    if params.control is not None:
        return "ttc.control", "not supported together with ttc.search yet"
    if params.decoding:
        return "ttc.decoding", "not supported together with ttc.search yet"
    if getattr(request, "stream", False):
        return "stream", "a search request cannot be streamed"
    if (getattr(request, "n", None) or 1) > 1:
        return "n", "a search returns one answer; use ttc.search.width for more samples"
    if getattr(request, "best_of", None) not in (None, 1):
        return "best_of", "not supported with ttc.search"
    if getattr(request, "echo", False):
        return "echo", "not supported with ttc.search"
    if getattr(request, "logprobs", None) not in (None, False):
        return "logprobs", "not supported with ttc.search (the report carries the scores)"
    if getattr(request, "use_beam_search", False):
        return "use_beam_search", "use ttc.search with strategy 'beam' instead"
    if getattr(request, "tools", None):
        return "tools", "not supported with ttc.search"
    return None


def with_request_limits(request: Any, params: TTCParams, sent: Any = None) -> TTCParams:
    """The search as the request bounds it: an explicit ``max_tokens`` (chat: also
    ``max_completion_tokens``) caps the answer, i.e. every path's new tokens
    (``ttc.search.max_total_tokens`` becomes the smaller of the two).

    :param sent: the request body's keys as the client sent them, where the server fills defaults
        into the parsed request before validation (vLLM's completions set ``max_tokens`` to 16);
        else the request model's own record of the fields it was given is used."""
    assert params.search is not None
    explicit = set(sent) if sent is not None else getattr(request, "model_fields_set", set())
    caps = [getattr(request, f) for f in ("max_tokens", "max_completion_tokens")
            if f in explicit and isinstance(getattr(request, f, None), int)]
    if not caps:
        return params
    args = params.search.args
    limit = min([args.max_total_tokens, *caps])
    if limit == args.max_total_tokens:
        return params
    search = replace(params.search, args=args.model_copy(update={"max_total_tokens": limit}))
    return replace(params, search=search)


def prompt_fits(prompt_tokens: int, context_len: int | None) -> tuple[str, str] | None:
    """``("prompt", why)`` when the prompt leaves no room to generate in the server's context."""
    if context_len is not None and prompt_tokens >= context_len:
        return "prompt", (f"{prompt_tokens} tokens; this server's context length is {context_len}, "
                          "so the search has no room to generate")
    return None


def single_text_prompt(prompt: Any) -> tuple[str | None, tuple[str, str] | None]:
    """A completions request's one text prompt, or ``(None, (field, why))``."""
    if isinstance(prompt, list):
        if len(prompt) != 1:
            return None, ("prompt", "a search request takes exactly one prompt")
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        return None, ("prompt", "a search request takes one non-empty text prompt")
    return prompt, None


def report_of(result: SearchResult, ops: Any, block_size: int, params: TTCParams | None = None) -> dict[str, Any]:
    """The ``ttc.search`` report of a served search: the result plus what its EngineOps did (every
    sequence it ran, its calls and KV accounting), and the settings it ran with (``params``: after
    the request's limits, e.g. ``max_total_tokens`` capped by ``max_tokens``)."""
    report = result.to_json()
    if params is not None and params.search is not None:
        report["settings"] = params.search.to_json("strategy")
    kv = ops.kv_stats()  # block-seconds integrated up to now
    report["engine"] = {"sequences": ops.sequences, "calls": dict(ops.calls),
                        "kv": {"tokens_computed": kv.tokens_computed, "tokens_reused": kv.tokens_reused,
                               "peak_blocks": kv.peak_blocks, "block_seconds": round(kv.block_seconds, 3),
                               "block_size": block_size}}
    return report


def finish_reason(result: SearchResult) -> str:
    """``length`` when the chosen path was cut (unfinished, or ended by the token limit),
    ``stop`` otherwise (or when there is none)."""
    chosen = next((c for c in result.candidates if c.branch_id == result.chosen_branch_id), None)
    if chosen is None:
        return "stop"
    return "length" if not chosen.finished or chosen.finish_reason == "length" else "stop"


def search_failure(exc: BaseException) -> tuple[HTTPStatus, str, str]:
    """(HTTP status, error type, message) for a search that raised something other than a
    :class:`~ttc_plugins.errors.TTCParamError` (a 400): 503 when its reward model did not answer,
    500 otherwise (a strategy's or scorer's own error, named)."""
    from ttc_plugins.errors import RewardModelUnavailable

    if isinstance(exc, RewardModelUnavailable):
        return HTTPStatus.SERVICE_UNAVAILABLE, "ServiceUnavailableError", f"search failed: {exc}"
    return HTTPStatus.INTERNAL_SERVER_ERROR, "InternalServerError", f"search failed: {type(exc).__name__}: {exc}"
