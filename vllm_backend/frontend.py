"""Frontend side (the process holding ``vllm.LLM`` / the API server): validate a request's ``ttc``
section, resolve its control, derive its cache salt, and report KV accounting when it finishes.

Called from the two patches in :mod:`.patches`; engine objects stay there.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Mapping

from ttc_plugins.errors import TTCParamError
from ttc_plugins.params import TTCParams
from ttc_plugins.runtime import report, requests
from ttc_plugins.runtime.wire import BRANCH_KEY, REQUEST_ID_KEY, TTC_KEY
from ttc_plugins.types import EngineFacts, RequestContext

from .config import EngineConfig, parse_engine_config

log = logging.getLogger("ttc_plugins.vllm_backend")

ENGINE = "vllm"
SEARCH_ONLY_ON_COMPLETIONS = (
    "a search runs in the API server's /v1/completions and /v1/chat/completions handlers (vllm_xargs.ttc "
    "with a 'search' object), "
    "or in Python with ttc_plugins.search.run_search over vllm_backend.search_ops.VLLMEngineOps; "
    "it cannot be a single engine generation"
)


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
    return requests.parse_raw(_pm(), raw, facts)


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
    #: the worker replays CUDA graphs, which skip the Python inside the residual-control op
    cuda_graphs: bool = False

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
        return cls(cfg, hidden, layers, vocab, arch, supported, block, uses_beam_scheduler(sched), width,
                   replays_cuda_graphs(vllm_config))

    @functools.cached_property
    def facts(self) -> EngineFacts:
        """What the engine can honour (built once: the engine's settings do not change)."""
        controls = self.config is not None and self.config.controls
        refused = {"ttc.search": SEARCH_ONLY_ON_COMPLETIONS}
        if not controls:
            refused["ttc.control"] = ("hidden-state control is off on this engine; start it with "
                                      "--additional-config '{\"ttc\": {}}' (LLM(additional_config={\"ttc\": {}}))")
        elif not self.controls_supported:
            refused["ttc.control"] = f"model architecture {self.architecture} does not support controls"
        elif self.cuda_graphs:
            refused["ttc.control"] = ("hidden-state control needs an engine without CUDA graphs (graph replay skips the "
                                      "per-request lookup in the control op); start it with --enforce-eager "
                                      "(LLM(enforce_eager=True)); decoding hooks work either way")
        if not self.beam_scheduler:
            refused["ttc.beam"] = ("token beam search runs in the engine's scheduler; start the engine with "
                                   f"--scheduler-cls {BEAM_SCHEDULER} (LLM(scheduler_cls=...))")
        return EngineFacts(vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                           **(self.config.control_facts() if controls else {}), refused=refused,
                           max_beam_width=self.max_beam_width,
                           beam_width_limits="additional_config.ttc.max_beam_width, max_logprobs / 2 and "
                                             "max_num_seqs bound it")

    def prepare(self, raw: Any, request_id: str, prompt_token_ids: Any) -> tuple[dict[str, Any], str | None]:
        """Validate and resolve one request: (``extra_args`` entries to set, cache salt or None).

        :raises TTCParamError: naming the field (HTTP 400 upstream).
        """
        prepared = requests.prepare_request(_pm(), raw, request_id=request_id, prompt_token_ids=prompt_token_ids,
                                            facts=self.facts, engine=ENGINE)
        if prepared is None:
            return {TTC_KEY: None, REQUEST_ID_KEY: request_id}, None
        return {**prepared.wire, REQUEST_ID_KEY: request_id}, prepared.cache_salt


BEAM_SCHEDULER = "ttc_plugins.vllm_backend.beam_scheduler.TTCScheduler"


def replays_cuda_graphs(vllm_config: Any) -> bool:
    """Whether the engine's worker replays CUDA graphs (a CUDA device, not eager, a cudagraph
    mode other than NONE): a captured graph replays the control op's kernels with the tables of
    the capture, not this step's requests."""
    device = getattr(getattr(vllm_config, "device_config", None), "device_type", "cpu")
    if str(device) != "cuda" or getattr(vllm_config.model_config, "enforce_eager", False):
        return False
    mode = getattr(getattr(vllm_config, "compilation_config", None), "cudagraph_mode", None)
    return mode is not None and getattr(mode, "name", str(mode)) != "NONE"


def uses_beam_scheduler(scheduler_config: Any) -> bool:
    """Whether the engine's ``scheduler_cls`` is (a subclass of) the TTC scheduler, judged by
    name so the frontend never imports the scheduler module."""
    cls = getattr(scheduler_config, "scheduler_cls", None)
    if cls is None:
        return False
    if isinstance(cls, str):
        return cls.replace(":", ".") in (BEAM_SCHEDULER, "vllm_backend.beam_scheduler.TTCScheduler")
    return any(c.__name__ == "TTCScheduler" and c.__module__.endswith("beam_scheduler") for c in cls.__mro__)


def report_finished(extra: Mapping[str, Any], request_id: str, prompt_token_ids: Any, output_token_ids: Any,
                    finish_reason: str | None, num_cached_tokens: int, block_size: int | None,
                    beam_kv: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The finishing hooks of an opted-in request; returns the result summary attached to the
    ``RequestOutput`` (``output.ttc``).

    :param beam_kv: a token beam search's engine accounting (``output.ttc["beam"]["kv"]``).
    """
    pm = _pm()
    ctx = requests.context_from_wire(pm, extra, request_id=request_id, prompt_token_ids=prompt_token_ids or (),
                                     engine=ENGINE)
    if ctx is None:
        ctx = RequestContext(request_id=request_id, prompt_token_ids=tuple(prompt_token_ids or ()), engine=ENGINE)
    stats = report.kv_stats(len(ctx.prompt_token_ids), num_cached_tokens, len(output_token_ids), block_size)
    if beam_kv is not None:
        stats = report.beam_kv_stats(beam_kv["tokens_computed"],
                                     stats.tokens_reused + int(beam_kv["tokens_shared_by_fork"]),
                                     beam_kv.get("peak_blocks", 0))
    return report.finish_request(pm, ctx, stats, finish_reason, output_token_ids)


_block_size: int | None = None


def set_block_size(value: int | None) -> None:
    global _block_size
    _block_size = value


def block_size() -> int | None:
    return _block_size
