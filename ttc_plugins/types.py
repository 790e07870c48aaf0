"""Data types that cross the hook boundary.

Small dataclasses with no engine imports: the backends build them from engine objects, plugins read
(and, where documented, fill) them. Tensors appear only in the worker-side batch types, typed
loosely so that importing this module never imports torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

    from .params import TTCParams

__all__ = [
    "Branch",
    "EngineFacts",
    "ControlPlan",
    "ControlSpec",
    "KVStats",
    "LogitsBatch",
    "LogitsRow",
    "RequestContext",
    "RequestReport",
    "Score",
    "Step",
    "canonical_json",
]


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the stable text form behind every hash here."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _freeze(value: Any) -> Any:
    """Turn JSON-like data into hashable tuples (dicts become sorted (key, value) tuples)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        if value and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) for v in value):
            return {k: _thaw(v) for k, v in value}
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class ControlSpec:
    """What to do to one request's residual stream: a registered control's name, the decoder
    layers it touches and its resolved, JSON-safe parameters.

    Hashable and canonical: two requests with equal specs share a :attr:`key`, which is also their
    prefix-cache isolation key, so KV computed under one control is never reused under another.
    """

    kind: str
    layers: tuple[int, ...]
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def build(cls, kind: str, layers: Sequence[int], params: Mapping[str, Any] | None = None) -> "ControlSpec":
        return cls(kind=kind, layers=tuple(sorted(set(int(x) for x in layers))), params=_freeze(params or {}))

    @property
    def args(self) -> dict[str, Any]:
        """The parameters as a plain dict (a fresh copy)."""
        return _thaw(self.params) if self.params else {}

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "layers": list(self.layers), "params": self.args}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ControlSpec":
        return cls.build(data["kind"], data["layers"], data.get("params") or {})

    @property
    def key(self) -> str:
        """Stable 16-hex-digit digest of the spec (same on every process and machine)."""
        return hashlib.sha256(canonical_json(self.to_json()).encode()).hexdigest()[:16]


@dataclass
class RequestContext:
    """One engine request (or one search branch's request) as plugins see it.

    ``params`` is the validated ``ttc`` section of the request (None when the request did not opt
    in); ``control`` is filled by ``ttc_resolve_control`` in the frontend, against ``facts`` (the
    serving engine). ``engine`` names the backend ("vllm", "sglang", or "memory" for the
    in-process reference engine).
    """

    request_id: str
    params: "TTCParams | None" = None
    prompt_token_ids: Sequence[int] = ()
    control: ControlSpec | None = None
    engine: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: the serving engine (frontend side, where controls are resolved); None elsewhere
    facts: EngineFacts | None = None

    @property
    def opted_in(self) -> bool:
        return self.params is not None


@dataclass(frozen=True)
class EngineFacts:
    """What the serving engine and its model are, as the frontend knows them at start: request
    parameters are checked against them before anything reaches the engine core (a token id past
    the vocabulary, a control the engine cannot apply: a 400 naming the field, never an error
    inside the engine nor a request accepted and silently ignored). ``None``: not known.

    - ``ttc_layers``: decoder layers hosting a TTC adapter (empty: none; the ``ttc_layer`` control
      is refused); ``ttc_horizons``: the horizon range (inclusive) each was trained at, where its
      file records one (a request's horizon outside it is refused);
    - ``vectors``: the server's named steering vectors (a :class:`~ttc_plugins.controls.vectors.VectorLibrary`);
    - ``refused``: request features this engine cannot honour, as ``{field: why}`` with ``field`` one
      of ``ttc.control``, ``ttc.decoding``, ``ttc.search``, ``ttc.beam`` (controls off, CUDA graphs or
      speculative decoding in use, no beam scheduler, a search sent as one generation...): a request
      using one is refused at parse time with that field and reason, by construction;
    - ``max_beam_width`` / ``beam_width_limits``: the widest ``ttc.beam`` and what sets that limit
      (named in the refusal).
    """

    vocab_size: int | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    ttc_layers: tuple[int, ...] = ()
    ttc_horizons: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    vectors: Any = None
    refused: Mapping[str, str] = field(default_factory=dict)
    max_beam_width: int | None = None
    beam_width_limits: str = ""


@dataclass
class KVStats:
    """KV accounting for one request or branch, in tokens and engine blocks.

    ``tokens_reused`` are prompt tokens served from the prefix cache (or a parent's shared
    blocks); ``tokens_computed`` are tokens the engine ran through the model. ``block_seconds``
    is the engine's blocks in use integrated over time (blocks x seconds, read from the engine's
    own gauge): what a search costs a server that holds its branches between rounds.
    """

    tokens_computed: int = 0
    tokens_reused: int = 0
    blocks_held: int = 0
    peak_blocks: int = 0
    block_seconds: float = 0.0

    def add(self, other: "KVStats") -> None:
        self.tokens_computed += other.tokens_computed
        self.tokens_reused += other.tokens_reused
        self.blocks_held += other.blocks_held
        self.peak_blocks = max(self.peak_blocks, other.peak_blocks)
        self.block_seconds += other.block_seconds


@dataclass
class Score:
    """A scorer's verdict on a branch or step: ``value`` in the scorer's own scale (higher is
    better), ``kind`` says whether it judges a partial path (process) or a final answer (outcome)."""

    value: float
    kind: Literal["process", "outcome"] = "process"
    scorer: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Step:
    """What one branch added in one round: text up to a delimiter (or the end)."""

    branch_id: str
    text: str
    token_ids: tuple[int, ...]
    stop_reason: Literal["delimiter", "eos", "length", "stop", "rejected"] = "delimiter"
    logprob: float = 0.0
    tokens_reused: int = 0
    #: backend-private engine state the branch can be forked from at its next step (for example
    #: a :class:`ttc_plugins.kv.held.HeldState`); the branch takes it over as ``Branch.handle``
    handle: Any = None


@dataclass
class Branch:
    """A node of a search tree: the tokens from the root prompt to here.

    Children share their parent's prefix; backends turn that into KV sharing (prefix caching, a
    radix tree, or an in-engine copy-on-write fork). ``handle`` is backend-private state (for
    example a live engine request id when the engine can fork in place); plugins never read it.
    """

    id: str
    parent_id: str | None
    prompt_token_ids: tuple[int, ...]
    token_ids: tuple[int, ...] = ()
    text: str = ""
    depth: int = 0
    finished: bool = False
    finish_reason: str | None = None
    steps: list[Step] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    logprob: float = 0.0
    kv: KVStats = field(default_factory=KVStats)
    num_children: int = 0
    handle: Any = None

    @property
    def all_token_ids(self) -> tuple[int, ...]:
        return self.prompt_token_ids + self.token_ids


@dataclass
class RequestReport:
    """What a finished opted-in request reports back to hooks and, for search, to the client."""

    request_id: str
    finish_reason: str | None
    output_token_ids: tuple[int, ...] = ()
    kv: KVStats = field(default_factory=KVStats)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LogitsRow:
    """One opted-in row of a logits batch: ``index`` into ``LogitsBatch.logits``, the request it
    belongs to and the tokens it generated so far (a live, read-only view)."""

    index: int
    ctx: RequestContext
    output_token_ids: Sequence[int]


@dataclass
class LogitsBatch:
    """Logits of one engine step, before sampling.

    ``logits`` is the engine's [num_rows, vocab] tensor; ``rows`` lists only the rows whose
    request opted in. Implementations edit ``logits`` in place for those rows and never touch
    the others: plain requests in the same batch must stay bit-identical.
    """

    logits: "torch.Tensor"
    rows: list[LogitsRow]


@dataclass
class ControlPlan:
    """The per-forward plan of hidden-state controls, built in the worker before the forward pass.

    ``token_slots`` maps each token of the flattened batch to a slot (index into ``specs``) or
    -1 for tokens of requests without a control. Implementations of ``ttc_prepare_controls``
    describe what each slot does at each layer with :meth:`add_vector` (steering) and
    :meth:`add_horizon` (TTC adapters); the backend turns the plan into tensors and applies them
    in place after each decoder layer (the ``residual_control`` and ``lqr`` kernels), inside
    compiled graphs too.
    """

    specs: list[ControlSpec]
    hidden_size: int
    num_layers: int
    # layer -> slot -> (vector, scale, mode, preserve_norm)
    vectors: dict[int, dict[int, tuple[Sequence[float], float, int, bool]]] = field(default_factory=dict)
    # layer -> slot -> (horizon T, scale): tokens of the slot go through the layer's TTC adapter
    horizons: dict[int, dict[int, tuple[int, float]]] = field(default_factory=dict)

    MODE_ADD = 0
    MODE_PROJECT = 1

    def add_vector(
        self, layer: int, slot: int, vector: Sequence[float], scale: float, *, mode: int = 0, preserve_norm: bool = False
    ) -> None:
        self._check(layer, slot)
        if len(vector) != self.hidden_size:
            raise ValueError(f"vector has {len(vector)} values; the model's hidden size is {self.hidden_size}")
        if mode not in (self.MODE_ADD, self.MODE_PROJECT):
            raise ValueError(f"mode must be {self.MODE_ADD} (add) or {self.MODE_PROJECT} (project), not {mode}")
        self.vectors.setdefault(layer, {})[slot] = (vector, float(scale), mode, bool(preserve_norm))

    def add_horizon(self, layer: int, slot: int, horizon: int, scale: float = 1.0) -> None:
        """Send the slot's tokens through the TTC adapter at ``layer`` with planning horizon
        ``horizon`` (0 = off) and add ``scale`` times its output to the residual stream."""
        self._check(layer, slot)
        if horizon < 0:
            raise ValueError(f"horizon must be >= 0, got {horizon}")
        self.horizons.setdefault(layer, {})[slot] = (int(horizon), float(scale))

    def _check(self, layer: int, slot: int) -> None:
        if not 0 <= layer < self.num_layers:
            raise ValueError(f"layer {layer} out of range: the model has {self.num_layers} decoder layers")
        if not 0 <= slot < len(self.specs):
            raise ValueError(f"slot {slot} out of range: the plan has {len(self.specs)} control slots")
