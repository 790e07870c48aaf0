"""A finished opted-in request: its KV accounting, the finishing hooks, the client's summary."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ttc_plugins.types import KVStats, RequestContext, RequestReport

from . import faults

if TYPE_CHECKING:  # pragma: no cover
    from ttc_plugins.manager import TTCPluginManager

log = logging.getLogger("ttc_plugins.runtime")


def kv_stats(prompt_len: int, cached_tokens: int, output_len: int, block_size: int | None) -> KVStats:
    """Accounting of one finished request: prompt tokens served from the prefix cache (vLLM's
    ``num_cached_tokens``, SGLang's radix ``cached_tokens``) are reused; every other prompt token
    and every generated token was computed. ``blocks_held`` counts KV blocks (pages) of
    ``block_size`` tokens."""
    reused = max(0, min(int(cached_tokens or 0), prompt_len))
    computed = prompt_len - reused + output_len
    blocks = math.ceil((prompt_len + output_len) / block_size) if block_size else 0
    return KVStats(tokens_computed=computed, tokens_reused=reused, blocks_held=blocks, peak_blocks=blocks)


def beam_kv_stats(tokens_computed: int, tokens_reused: int, peak_blocks: int) -> KVStats:
    """Accounting of a token beam search (``ttc.beam``): the scheduler's count of tokens computed,
    prompt tokens from the prefix cache plus prefix tokens its forks shared instead of recomputing."""
    return KVStats(tokens_computed=int(tokens_computed), tokens_reused=int(tokens_reused),
                   blocks_held=int(peak_blocks), peak_blocks=int(peak_blocks))


def finish_request(pm: "TTCPluginManager", ctx: RequestContext, stats: KVStats, finish_reason: str | None,
                   output_token_ids: Sequence[int]) -> dict[str, Any]:
    """Call ``ttc_kv_report`` and ``ttc_request_finished``; returns the request's summary (the
    client's ``ttc`` object: control key, KV accounting, and what ``ttc_request_finished`` added).

    These hooks run where the engine hands out finished outputs (vLLM's output loop serves every
    request), so a hook that raises must not escape: the request keeps its answer and its summary
    says which hook failed and why under ``errors``."""
    errors = []
    try:
        pm.hook.ttc_kv_report(ctx=ctx, stats=stats)
    except Exception as exc:  # noqa: BLE001 - a plugin error is this request's, never the engine's
        errors.append(str(faults.describe("ttc_kv_report", exc)))
    report = RequestReport(request_id=ctx.request_id, finish_reason=finish_reason,
                           output_token_ids=tuple(output_token_ids), kv=stats)
    try:
        pm.hook.ttc_request_finished(ctx=ctx, report=report)
    except Exception as exc:  # noqa: BLE001
        errors.append(str(faults.describe("ttc_request_finished", exc)))
    for error in errors:
        log.error("%s (request %s)", error, ctx.request_id)
    return {
        "control_key": ctx.control.key if ctx.control is not None else None,
        "kv": {"tokens_computed": stats.tokens_computed, "tokens_reused": stats.tokens_reused,
               "blocks_held": stats.blocks_held, "peak_blocks": stats.peak_blocks},
        **report.extra,
        **({"errors": errors} if errors else {}),
    }


def beam_report(beams: Sequence[Mapping[str, Any]], kv: Mapping[str, Any], wall_time_s: float) -> dict[str, Any]:
    """A token beam search's report (the client's ``ttc.beam``), the same shape on every engine:
    every beam (best first), the engine's KV accounting, the wall time."""
    return {"beams": [dict(b) for b in beams], "kv": dict(kv), "wall_time_s": float(wall_time_s)}
