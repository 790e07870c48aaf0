"""Per-request settings: the ``ttc`` entry of SGLang's ``sampling_params.custom_params``.

Only JSON travels. A client writes::

    sampling_params={"max_new_tokens": 16,
                     "custom_params": {"ttc": {"control": {"name": "steering", ...},
                                               "decoding": [{"name": "force_token", "token_id": 7}]}}}

(OpenAI endpoints: ``extra_body={"custom_params": {"ttc": {...}}}``). The frontend (tokenizer
manager, main process) validates it once, resolves the control, and rewrites ``custom_params``
into the canonical form the scheduler re-parses:

- ``custom_params["ttc"]``: ``TTCParams.to_json()``;
- ``custom_params["_ttc_control"]``: the resolved ``ControlSpec`` JSON (written only here; a client
  value under that key is dropped, so a client cannot skip resolution);
- the request's ``cache_salt`` gains ``ttc:<control key>`` (SGLang's radix cache keys every node by
  its salt, so prefixes computed under one control are never reused under another).

Engine-free: imports neither sglang nor torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ttc_plugins.controls.vectors import VectorLibrary
from ttc_plugins.errors import TTCParamError
from ttc_plugins.types import ControlSpec, EngineFacts, KVStats, RequestContext

if TYPE_CHECKING:  # pragma: no cover
    from ttc_plugins.manager import TTCPluginManager

ENGINE = "sglang"
TTC_KEY = "ttc"
RESOLVED_KEY = "_ttc_control"
SALT_PREFIX = "ttc:"
SEARCH_NOT_A_GENERATION = (
    "a search runs in the OpenAI server's /v1/completions and /v1/chat/completions handlers "
    "(custom_params.ttc with a 'search' object), or in Python with ttc_plugins.search.run_search over "
    "sglang_backend.search_ops.SGLangEngineOps; it cannot be a single engine generation"
)


@dataclass(frozen=True)
class ModelInfo:
    """What the frontend knows about the served model (fills ``RequestContext.extra``)."""

    hidden_size: int | None = None
    num_layers: int | None = None
    vectors: VectorLibrary = field(default_factory=VectorLibrary)
    vocab_size: int | None = None

    @property
    def facts(self) -> EngineFacts:
        # No TTC adapter is hosted on SGLang yet: the ttc_layer control is refused (a 400 naming
        # ttc.control.layers), never accepted and ignored.
        return EngineFacts(vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                           ttc_layers=(), vectors=self.vectors)


@dataclass
class Prepared:
    """The outcome of :func:`prepare_request` for one opted-in request."""

    ctx: RequestContext
    custom_params: dict[str, Any]
    cache_salt: str | None


def combine_salt(existing: str | None, ours: str | None) -> str | None:
    """The request's own ``cache_salt`` stays part of the key: isolation composes."""
    if ours is None:
        return existing
    return ours if not existing else f"{existing}|{ours}"


def strip_resolved(custom_params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``custom_params`` without the frontend-only key (a client may never supply it)."""
    if custom_params is None:
        return None
    return {k: v for k, v in custom_params.items() if k != RESOLVED_KEY}


def prepare_request(
    pm: "TTCPluginManager",
    request_id: str,
    custom_params: Mapping[str, Any] | None,
    cache_salt: str | None,
    prompt_token_ids: Sequence[int] = (),
    model: ModelInfo | None = None,
) -> Prepared | None:
    """Validate and resolve one request in the frontend; ``None`` if it did not opt in.

    :raises TTCParamError: naming the field (SGLang turns the ``ValueError`` into HTTP 400).
    """
    if custom_params is not None and not isinstance(custom_params, Mapping):
        raise TTCParamError("custom_params", f"must be a JSON object, got {type(custom_params).__name__}")
    model = model or ModelInfo()
    facts = model.facts
    if TTC_KEY in (custom_params or {}) and custom_params[TTC_KEY] is None:
        raise TTCParamError("ttc", "must be a JSON object, got null; leave the key out to not use ttc")
    raw = (custom_params or {}).get(TTC_KEY)
    params = pm.parse_params(raw, facts)
    if params is None:
        return None
    if params.search is not None:  # never run a search silently as one plain generation
        raise TTCParamError("ttc.search", SEARCH_NOT_A_GENERATION)
    ctx = RequestContext(
        request_id=request_id,
        params=params,
        prompt_token_ids=tuple(prompt_token_ids or ()),
        engine=ENGINE,
        facts=facts,
    )
    spec = pm.hook.ttc_resolve_control(ctx=ctx)
    if spec is not None:
        if not isinstance(spec, ControlSpec):
            raise TypeError(f"ttc_resolve_control returned {type(spec).__name__}, expected ControlSpec")
        if spec.layers and model.num_layers is not None and max(spec.layers) >= model.num_layers:
            raise TTCParamError("ttc.control.layers", f"the model has {model.num_layers} decoder layers")
        ctx.control = spec
    out = strip_resolved(custom_params) or {}
    out[TTC_KEY] = params.to_json()
    if spec is not None:
        out[RESOLVED_KEY] = spec.to_json()
    salt = pm.hook.ttc_cache_salt(ctx=ctx)
    return Prepared(ctx=ctx, custom_params=out, cache_salt=combine_salt(cache_salt, SALT_PREFIX + salt if salt else None))


def context_from_custom_params(
    pm: "TTCPluginManager", request_id: str, custom_params: Mapping[str, Any] | None, prompt_token_ids: Sequence[int] = ()
) -> RequestContext | None:
    """Worker side: rebuild the context from the canonical JSON the frontend wrote."""
    if not custom_params or custom_params.get(TTC_KEY) is None:
        return None
    params = pm.parse_params(custom_params[TTC_KEY])
    resolved = custom_params.get(RESOLVED_KEY)
    return RequestContext(
        request_id=request_id,
        params=params,
        prompt_token_ids=tuple(prompt_token_ids or ()),
        control=ControlSpec.from_json(resolved) if resolved else None,
        engine=ENGINE,
    )


def check_beam(width: int, max_width: int, n: int | None, stop_strs: Any, return_logprob: bool,
               beam_width: int | None) -> int:
    """Frontend checks of a ``ttc.beam`` request; the SGLang ``beam_width`` to send it with
    (SGLang runs width 1 as no beam at all, so a width-1 search rides a 2-row group).

    :raises TTCParamError: naming the field.
    """
    if width > max_width:
        raise TTCParamError("ttc.beam.width", f"{width} is above this server's limit of {max_width} "
                                              "(TTC_SGLANG_CONFIG max_beam_width)")
    if n is not None and n > 1:
        raise TTCParamError("n", "ttc.beam answers with every beam in one result; n must be 1")
    if stop_strs:
        raise TTCParamError("stop", "ttc.beam on SGLang stops on tokens only (EOS, stop_token_ids); "
                                    "SGLang's beam rows cannot match stop strings")
    if return_logprob:
        raise TTCParamError("return_logprob", "ttc.beam reports each beam's cumulative_logprob; "
                                              "per-token logprobs are not returned")
    if beam_width is not None and beam_width > 1:
        raise TTCParamError("beam_width", "use either SGLang's own beam_width or ttc.beam, not both")
    return max(width, 2)


def beam_report(beams: list[dict[str, Any]], kv: dict[str, Any], wall_time_s: float) -> dict[str, Any]:
    """A ``ttc.beam`` report: the vLLM backend's shape (``beams``, ``kv``, ``wall_time_s``)."""
    return {"beams": beams, "kv": kv, "wall_time_s": wall_time_s}


def kv_stats(prompt_len: int, cached_tokens: int, output_len: int, page_size: int | None) -> KVStats:
    """Accounting of one finished request from SGLang's ``meta_info``: prompt tokens matched in
    the radix cache (``cached_tokens``) are reused; every other prompt token and every generated
    token was computed. ``blocks_held`` counts KV pages (SGLang's ``page_size`` tokens each)."""
    reused = max(0, min(int(cached_tokens or 0), prompt_len))
    computed = prompt_len - reused + output_len
    total = prompt_len + output_len
    blocks = math.ceil(total / page_size) if page_size else 0
    return KVStats(tokens_computed=computed, tokens_reused=reused, blocks_held=blocks, peak_blocks=blocks)


def finish_reason_name(finish_reason: Any) -> str | None:
    """SGLang's ``meta_info["finish_reason"]`` (``{"type": "length", ...}``) as a plain name."""
    if finish_reason is None:
        return None
    if isinstance(finish_reason, Mapping):
        kind = finish_reason.get("type")
        return str(kind) if kind is not None else None
    return str(finish_reason)
