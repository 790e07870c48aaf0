"""A request's way through the frontend and back in the worker, the same on every engine.

:func:`prepare_request` (frontend, once per request): validate the raw ``ttc`` section against
the engine's :class:`~ttc_plugins.types.EngineFacts` (a feature the engine cannot honour is a
:class:`~ttc_plugins.errors.TTCParamError` naming the field: HTTP 400), resolve the control
(``ttc_resolve_control``), derive the cache salt (``ttc_cache_salt``) and write the wire payload.
:func:`context_from_wire` (worker): rebuild the request's context from that payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ttc_plugins.errors import TTCParamError
from ttc_plugins.params import decode_json_text
from ttc_plugins.types import ControlSpec, EngineFacts, RequestContext

from .wire import PRIVATE_KEYS, RESOLVED_KEY, SALT_PREFIX, TTC_KEY

if TYPE_CHECKING:  # pragma: no cover
    from ttc_plugins.manager import TTCPluginManager
    from ttc_plugins.params import TTCParams


@dataclass
class Prepared:
    """One opted-in request after the frontend: its context (control resolved), the wire entries
    to write into the engine-side parameters, and its cache salt (the request's own, composed)."""

    ctx: RequestContext
    wire: dict[str, Any]
    cache_salt: str | None


def parse_raw(pm: "TTCPluginManager", raw: Any, facts: EngineFacts | None = None) -> "TTCParams | None":
    """The validated ``ttc`` section, or ``None`` when absent. The section may also be its JSON
    text (vLLM's ``vllm_xargs`` values are scalars over HTTP); ``"null"`` is an error there."""
    if isinstance(raw, str):
        raw = decode_json_text(raw)
    return pm.parse_params(raw, facts)


def combine_salt(existing: str | None, ours: str | None) -> str | None:
    """The request's own ``cache_salt`` (if any) stays part of the key: isolation composes."""
    if ours is None:
        return existing
    return ours if not existing else f"{existing}|{ours}"


def without_private(entries: Mapping[str, Any] | None) -> dict[str, Any]:
    """The engine-side parameters without the frontend-only keys (a client never supplies them)."""
    return {k: v for k, v in (entries or {}).items() if k not in PRIVATE_KEYS}


def prepare_request(
    pm: "TTCPluginManager",
    raw: Any,
    *,
    request_id: str,
    prompt_token_ids: Sequence[int],
    facts: EngineFacts,
    engine: str,
    cache_salt: str | None = None,
) -> Prepared | None:
    """Validate, resolve and salt one request; ``None`` if it did not opt in.

    :raises TTCParamError: naming the field (the backends turn it into their HTTP 400).
    """
    params = parse_raw(pm, raw, facts)
    if params is None:
        return None
    ctx = RequestContext(request_id=request_id, params=params, prompt_token_ids=tuple(prompt_token_ids or ()),
                         engine=engine, facts=facts)
    wire: dict[str, Any] = {TTC_KEY: params.to_json()}
    spec = pm.hook.ttc_resolve_control(ctx=ctx)
    if spec is not None:
        if not isinstance(spec, ControlSpec):
            raise TypeError(f"ttc_resolve_control returned {type(spec).__name__}, expected ControlSpec")
        if spec.layers and facts.num_layers is not None and max(spec.layers) >= facts.num_layers:
            raise TTCParamError("ttc.control.layers", f"the model has {facts.num_layers} decoder layers")
        ctx.control = spec
        wire[RESOLVED_KEY] = spec.to_json()
    salt = pm.hook.ttc_cache_salt(ctx=ctx)
    return Prepared(ctx=ctx, wire=wire, cache_salt=combine_salt(cache_salt, SALT_PREFIX + salt if salt else None))


def context_from_wire(
    pm: "TTCPluginManager", entries: Mapping[str, Any] | None, *, request_id: str, prompt_token_ids: Sequence[int],
    engine: str,
) -> RequestContext | None:
    """The worker-side context of a request whose engine-side parameters are ``entries`` (what
    the frontend wrote: canonical JSON, already validated there); ``None`` if it did not opt in."""
    if not entries or entries.get(TTC_KEY) is None:
        return None
    resolved = entries.get(RESOLVED_KEY)
    return RequestContext(
        request_id=request_id,
        params=parse_raw(pm, entries[TTC_KEY]),
        prompt_token_ids=tuple(prompt_token_ids or ()),
        control=ControlSpec.from_json(resolved) if resolved else None,
        engine=engine,
    )
