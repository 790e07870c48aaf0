"""Frontend side (the process holding ``vllm.LLM`` / the API server): validate a request's ``ttc``
section, resolve its control, derive its cache salt, and report KV accounting when it finishes.

Called from the two patches in :mod:`.patches`; engine objects stay there.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping

from ttc_plugins.errors import TTCParamError
from ttc_plugins.params import TTCParams, decode_json_text
from ttc_plugins.types import ControlSpec, EngineFacts, KVStats, RequestContext, RequestReport

from .config import EngineConfig, parse_engine_config
from .wire import BRANCH_KEY, PRIVATE_KEYS, REQUEST_ID_KEY, RESOLVED_KEY

log = logging.getLogger("ttc_plugins.vllm_backend")

SALT_PREFIX = "ttc:"


def _pm():
    from ttc_plugins.manager import get_plugin_manager

    return get_plugin_manager()


def check_branch_args(raw: Any) -> None:
    """Validate a ``ttc_branch`` entry (``{"hold": key, "fork_from": key}``, keys non-empty
    strings of at most 200 characters); :class:`TTCParamError` names the field."""
    if not isinstance(raw, dict):
        raise TTCParamError(BRANCH_KEY, f"must be an object with 'hold' and/or 'fork_from', got {type(raw).__name__}")
    for name, value in raw.items():
        if name not in ("hold", "fork_from"):
            raise TTCParamError(f"{BRANCH_KEY}.{name}", "unknown key (allowed: hold, fork_from)")
        if not isinstance(value, str) or not 0 < len(value) <= 200:
            raise TTCParamError(f"{BRANCH_KEY}.{name}", "must be a non-empty string of at most 200 characters")


def parse_request_params(raw: Any, facts: EngineFacts | None = None) -> TTCParams | None:
    """Validate the raw ``ttc`` value; :class:`TTCParamError` names the field.

    Over HTTP, ``vllm_xargs`` values are scalars, so ``"ttc"`` may also be the section as a JSON
    string (``"vllm_xargs": {"ttc": "{\\"control\\": ...}"}``); that string must hold an object
    (``"null"`` is an error, not "no ttc").
    """
    if isinstance(raw, str):
        raw = decode_json_text(raw)
    return _pm().parse_params(raw, facts)


@dataclass
class FrontendState:
    """What the frontend knows about the engine, built once per engine at start."""

    config: EngineConfig | None
    hidden_size: int | None
    num_layers: int | None
    vocab_size: int | None
    architecture: str | None
    controls_supported: bool
    block_size: int | None = None
    #: the engine runs :class:`.beam_scheduler.TTCScheduler` (``ttc.beam`` needs it)
    beam_scheduler: bool = False
    #: widest beam: the configured ``max_beam_width``, half of ``max_logprobs`` (each beam asks
    #: for 2 * width logprobs) and ``max_num_seqs`` (each beam holds a request slot)
    max_beam_width: int = 16

    @classmethod
    def from_vllm_config(cls, vllm_config: Any) -> "FrontendState":
        from .model_wrap import SUPPORTED_ARCHITECTURES

        model_config = vllm_config.model_config
        hf = model_config.hf_text_config
        hidden = getattr(hf, "hidden_size", None)
        layers = getattr(hf, "num_hidden_layers", None)
        archs = list(getattr(model_config, "architectures", None) or getattr(hf, "architectures", None) or [])
        arch = archs[0] if archs else None
        cfg = parse_engine_config(vllm_config.additional_config, hidden_size=hidden)
        supported = arch in SUPPORTED_ARCHITECTURES
        if cfg is not None and cfg.controls and not supported:
            log.warning(
                "ttc: architecture %s has no control wrapper (supported: %s); requests with ttc.control "
                "will be rejected",
                arch,
                ", ".join(SUPPORTED_ARCHITECTURES),
            )
        block = getattr(vllm_config.cache_config, "block_size", None)
        sched = vllm_config.scheduler_config
        width = min(cfg.max_beam_width if cfg is not None else 16,
                    max(1, int(getattr(model_config, "max_logprobs", 20) or 20) // 2),
                    int(getattr(sched, "max_num_seqs", 256) or 256))
        vocab = model_config.get_vocab_size() if hasattr(model_config, "get_vocab_size") else getattr(hf, "vocab_size", None)
        return cls(cfg, hidden, layers, vocab, arch, supported, block, uses_beam_scheduler(sched), width)

    @property
    def facts(self) -> EngineFacts:
        controls = self.config is not None and self.config.controls
        return EngineFacts(vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                           ttc_layers=tuple(sorted(self.config.ttc_layers)) if controls else (),
                           vectors=self.config.vector_library() if controls else None)

    def prepare(self, raw: Any, request_id: str, prompt_token_ids: Any) -> tuple[dict[str, Any], str | None]:
        """Validate and resolve one request: (``extra_args`` entries to set, cache salt or None).

        :raises TTCParamError: naming the field (HTTP 400 upstream).
        """
        facts = self.facts
        params = parse_request_params(raw, facts)
        out: dict[str, Any] = {"ttc": params.to_json() if params is not None else None, REQUEST_ID_KEY: request_id}
        if params is None:
            return out, None
        ctx = RequestContext(
            request_id=request_id,
            params=params,
            prompt_token_ids=tuple(prompt_token_ids or ()),
            engine="vllm",
            facts=facts,
        )
        if params.beam is not None:
            self.check_beam(params)
        if params.control is not None:
            if self.config is None or not self.config.controls:
                raise TTCParamError(
                    "ttc.control",
                    "hidden-state control is off on this engine; start it with "
                    "--additional-config '{\"ttc\": {}}' (LLM(additional_config={\"ttc\": {}}))",
                )
            if not self.controls_supported:
                raise TTCParamError("ttc.control", f"model architecture {self.architecture} does not support controls")
        pm = _pm()
        spec = pm.hook.ttc_resolve_control(ctx=ctx)
        if spec is not None:
            if not isinstance(spec, ControlSpec):
                raise TypeError(f"ttc_resolve_control returned {type(spec).__name__}, expected ControlSpec")
            if spec.layers and self.num_layers is not None and max(spec.layers) >= self.num_layers:
                raise TTCParamError("ttc.control.layers", f"the model has {self.num_layers} decoder layers")
            ctx.control = spec
            out[RESOLVED_KEY] = spec.to_json()
        salt = pm.hook.ttc_cache_salt(ctx=ctx)
        return out, (SALT_PREFIX + salt) if salt else None

    def check_beam(self, params: TTCParams) -> None:
        """``ttc.beam`` runs inside the engine's scheduler: refuse it where it cannot run."""
        if not self.beam_scheduler:
            raise TTCParamError(
                "ttc.beam",
                "token beam search runs in the engine's scheduler; start the engine with "
                f"--scheduler-cls {BEAM_SCHEDULER} (LLM(scheduler_cls=...))",
            )
        assert params.beam is not None
        if params.beam.width > self.max_beam_width:
            raise TTCParamError(
                "ttc.beam.width",
                f"{params.beam.width} is above this engine's limit of {self.max_beam_width} (additional_config.ttc."
                "max_beam_width, max_logprobs / 2 and max_num_seqs bound it)",
            )


BEAM_SCHEDULER = "ttc_plugins.vllm_backend.beam_scheduler.TTCScheduler"


def uses_beam_scheduler(scheduler_config: Any) -> bool:
    """Whether the engine's ``scheduler_cls`` is (a subclass of) the TTC scheduler, judged by
    name so the frontend never imports the scheduler module."""
    cls = getattr(scheduler_config, "scheduler_cls", None)
    if cls is None:
        return False
    if isinstance(cls, str):
        return cls.replace(":", ".") in (BEAM_SCHEDULER, "vllm_backend.beam_scheduler.TTCScheduler")
    return any(c.__name__ == "TTCScheduler" and c.__module__.endswith("beam_scheduler") for c in cls.__mro__)


def combine_salt(existing: str | None, ours: str | None) -> str | None:
    """The request's own ``cache_salt`` (if any) stays part of the key: isolation composes."""
    if ours is None:
        return existing
    return ours if not existing else f"{existing}|{ours}"


def kv_stats(prompt_len: int, num_cached_tokens: int, num_output_tokens: int, block_size: int | None) -> KVStats:
    """Accounting of one finished request: prompt tokens served from the prefix cache are
    reused; every other prompt token and every generated token was computed by the model."""
    reused = max(0, min(int(num_cached_tokens or 0), prompt_len))
    computed = prompt_len - reused + num_output_tokens
    total = prompt_len + num_output_tokens
    blocks = math.ceil(total / block_size) if block_size else 0
    return KVStats(tokens_computed=computed, tokens_reused=reused, blocks_held=blocks, peak_blocks=blocks)


def report_finished(extra: Mapping[str, Any], request_id: str, prompt_token_ids: Any, output_token_ids: Any,
                    finish_reason: str | None, num_cached_tokens: int, block_size: int | None,
                    beam_kv: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Call ``ttc_kv_report`` and ``ttc_request_finished`` for a finished opted-in request;
    returns the result summary attached to the ``RequestOutput`` (``output.ttc``).

    :param beam_kv: a token beam search's engine accounting (``output.ttc["beam"]["kv"]``): its
        tokens computed, and prompt tokens from the prefix cache plus prefix tokens its forks
        shared instead of recomputing, are what the KV hooks see.
    """
    pm = _pm()
    params = parse_request_params(extra.get("ttc"))
    resolved = extra.get(RESOLVED_KEY)
    ctx = RequestContext(
        request_id=request_id,
        params=params,
        prompt_token_ids=tuple(prompt_token_ids or ()),
        control=ControlSpec.from_json(resolved) if resolved else None,
        engine="vllm",
    )
    stats = kv_stats(len(ctx.prompt_token_ids), num_cached_tokens, len(output_token_ids), block_size)
    if beam_kv is not None:
        stats = KVStats(tokens_computed=int(beam_kv["tokens_computed"]),
                        tokens_reused=stats.tokens_reused + int(beam_kv["tokens_shared_by_fork"]),
                        blocks_held=0, peak_blocks=int(beam_kv.get("peak_blocks", 0)))
    pm.hook.ttc_kv_report(ctx=ctx, stats=stats)
    report = RequestReport(request_id=request_id, finish_reason=finish_reason,
                           output_token_ids=tuple(output_token_ids), kv=stats)
    pm.hook.ttc_request_finished(ctx=ctx, report=report)
    return {
        "control_key": ctx.control.key if ctx.control is not None else None,
        "kv": {"tokens_computed": stats.tokens_computed, "tokens_reused": stats.tokens_reused,
               "blocks_held": stats.blocks_held, "peak_blocks": stats.peak_blocks},
        **report.extra,
    }


_block_size: int | None = None


def set_block_size(value: int | None) -> None:
    global _block_size
    _block_size = value


def block_size() -> int | None:
    return _block_size
