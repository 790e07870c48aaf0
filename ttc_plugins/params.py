"""The per-request ``ttc`` parameters: parsed once in the frontend, errors name the field.

Wire format (JSON only; vLLM ``SamplingParams.extra_args["ttc"]`` / HTTP ``vllm_xargs``, SGLang
sampling params)::

    {"control":  {"name": "steering", "layers": [2], "vector": [...], "scale": 4.0},
     "decoding": [{"name": "force_token", "token_id": 42}],
     "search":   {"strategy": "beam", "width": 4, ...},
     "beam":     {"width": 4, "length_penalty": 1.0, "early_stopping": false}}

Every key is optional; a key that is present must hold its section (``null`` is an error, not
"absent"). Each named component validates its own arguments with its ``Params`` model
(:class:`ttc_plugins.request_model.RequestModel`: strict types, finite numbers, no unknown keys),
so a misspelled or mistyped field never silently does something else. Sizes are bounded before any
model sees the value (nesting depth, and the frontend's JSON text), and with :class:`EngineFacts`
each component checks its arguments against the served model (token ids inside the vocabulary).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from pydantic import BaseModel, ValidationError

from .errors import TTCParamError
from .token_beam import BeamParams
from .types import EngineFacts

if TYPE_CHECKING:  # pragma: no cover
    from .registry import Registry

ROOT = "ttc"
_TOP_LEVEL = ("control", "decoding", "search", "beam")
#: deepest nesting of objects/arrays a ``ttc`` section may have (the deepest legitimate one,
#: ``search.scorer_args``' values, is 4 levels down)
MAX_DEPTH = 16
#: longest ``ttc`` section accepted as JSON text (a steering vector of hidden size 16,384 fits many times)
MAX_JSON_TEXT = 4 * 2**20


@dataclass(frozen=True)
class NamedParams:
    """A registered component's name and its validated arguments."""

    name: str
    args: BaseModel

    def to_json(self, name_key: str = "name") -> dict[str, Any]:
        return {name_key: self.name, **self.args.model_dump(mode="json")}


@dataclass(frozen=True)
class TTCParams:
    """The validated ``ttc`` section of one request."""

    control: NamedParams | None = None
    decoding: tuple[NamedParams, ...] = ()
    search: NamedParams | None = None
    #: token-level beam search run inside the engine (vLLM: needs the TTC scheduler)
    beam: BeamParams | None = None

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON form (what travels to the worker process)."""
        out: dict[str, Any] = {}
        if self.control is not None:
            out["control"] = self.control.to_json()
        if self.decoding:
            out["decoding"] = [d.to_json() for d in self.decoding]
        if self.search is not None:
            out["search"] = self.search.to_json("strategy")
        if self.beam is not None:
            out["beam"] = self.beam.model_dump(mode="json")
        return out


def decode_json_text(raw: str) -> Any:
    """A ``ttc`` section sent as JSON text (vLLM's ``vllm_xargs`` values are scalars; SGLang
    accepts the text too), decoded with its size bounded; the text must hold an object (``"null"``
    is an error, not "no ttc").

    :raises TTCParamError: naming ``ttc``.
    """
    if len(raw) > MAX_JSON_TEXT:
        raise TTCParamError(ROOT, f"JSON text of {len(raw)} characters; at most {MAX_JSON_TEXT}")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise TTCParamError(ROOT, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise TTCParamError(ROOT, "nested too deeply") from None
    if value is None:
        raise TTCParamError(ROOT, "must be a JSON object, got null")
    return value


def check_depth(raw: Any, field: str = ROOT, max_depth: int = MAX_DEPTH) -> None:
    """Refuse values nested deeper than ``max_depth`` (iteratively: a 3,000-deep object must be a
    clear error, not a ``RecursionError`` somewhere later)."""
    stack = [(raw, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if depth > max_depth:
            raise TTCParamError(field, f"nested deeper than {max_depth} levels")
        stack.extend((c, depth + 1) for c in children)


def validate_args(field: str, model: type[BaseModel], args: Mapping[str, Any]) -> BaseModel:
    """Validate one component's arguments, strictly, as the JSON they are on the wire: no
    string-to-number or number-to-bool coercion, NaN/infinity refused; the error names the field."""
    try:
        text = json.dumps(dict(args))
    except (TypeError, ValueError) as exc:
        raise TTCParamError(field, f"must be plain JSON values: {exc}") from None
    try:
        return model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, TTCParamError):  # a model validator naming a field of its own model
            raise TTCParamError(f"{field}.{inner.field}", inner.message) from None
        raise TTCParamError(f"{field}.{loc}" if loc else field, err.get("msg", "invalid value")) from None



def _named(field: str, raw: Any, registry: "Registry", name_key: str = "name") -> NamedParams:
    if not isinstance(raw, Mapping):
        raise TTCParamError(field, f"must be an object with a {name_key!r} key, got {type(raw).__name__}")
    name = raw.get(name_key)
    if not isinstance(name, str):
        raise TTCParamError(f"{field}.{name_key}", f"required string naming a registered {registry.kind}")
    if name not in registry:
        known = ", ".join(registry.names()) or "none"
        raise TTCParamError(f"{field}.{name_key}", f"unknown {registry.kind} {name!r}; registered: {known}")
    component = registry.get(name)
    args = {k: v for k, v in raw.items() if k != name_key}
    return NamedParams(name=name, args=validate_args(field, component.Params, args))


def parse_ttc_params(
    raw: Any, *, controls: "Registry", decoders: "Registry", strategies: "Registry",
    facts: EngineFacts | None = None,
) -> TTCParams | None:
    """Validate a request's raw ``ttc`` value; ``None`` (absent) means the request did not opt in.

    :param facts: the served model; given (in the frontend), every component with a
        ``check(args, facts)`` checks its arguments against it.
    :raises TTCParamError: with the dotted field path, e.g. ``ttc.control.scale``.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise TTCParamError(ROOT, f"must be a JSON object, got {type(raw).__name__}")
    check_depth(raw)
    unknown = sorted(set(raw) - set(_TOP_LEVEL))
    if unknown:
        raise TTCParamError(f"{ROOT}.{unknown[0]}", f"unknown field; allowed: {', '.join(_TOP_LEVEL)}")
    for key in _TOP_LEVEL:
        if key in raw and raw[key] is None:
            raise TTCParamError(f"{ROOT}.{key}", "is null; leave the key out to not use it")
    control = None
    if "control" in raw:
        control = _named(f"{ROOT}.control", raw["control"], controls)
    decoding_raw = raw.get("decoding", [])
    if not isinstance(decoding_raw, list):
        raise TTCParamError(f"{ROOT}.decoding", f"must be a list of objects, each with a 'name'; got {type(decoding_raw).__name__}")
    decoding = tuple(_named(f"{ROOT}.decoding.{i}", d, decoders) for i, d in enumerate(decoding_raw))
    search = None
    if "search" in raw:
        search = _named(f"{ROOT}.search", raw["search"], strategies, name_key="strategy")
    beam = None
    if "beam" in raw:
        if not isinstance(raw["beam"], Mapping):
            raise TTCParamError(f"{ROOT}.beam", f"must be an object, got {type(raw['beam']).__name__}")
        beam = validate_args(f"{ROOT}.beam", BeamParams, raw["beam"])
        others = [k for k in ("control", "decoding", "search") if raw.get(k)]
        if others:
            raise TTCParamError(f"{ROOT}.beam", f"cannot be combined with {ROOT}.{others[0]}")
    params = TTCParams(control=control, decoding=decoding, search=search, beam=beam)
    if facts is not None:
        check_against_engine(params, facts, controls=controls, decoders=decoders)
    return params


def check_against_engine(params: TTCParams, facts: EngineFacts, *, controls: "Registry", decoders: "Registry") -> None:
    """Every named component with a ``check(args, facts)`` classmethod checks its validated
    arguments against the served model; it raises :class:`TTCParamError` with the field inside its
    own arguments (``token_id``), which gets the request's path prefixed here.

    Before that, a feature the engine cannot honour (``facts.refused``) is refused with the
    engine's reason, and a ``ttc.beam`` wider than ``facts.max_beam_width`` names the limit: a
    request is applied as asked or refused, never accepted and ignored."""
    used = {f"{ROOT}.control": params.control, f"{ROOT}.decoding": params.decoding or None,
            f"{ROOT}.search": params.search, f"{ROOT}.beam": params.beam}
    for feature, value in used.items():
        if value is not None and feature in facts.refused:
            raise TTCParamError(feature, facts.refused[feature])
    if params.beam is not None and facts.max_beam_width is not None and params.beam.width > facts.max_beam_width:
        limits = f" ({facts.beam_width_limits})" if facts.beam_width_limits else ""
        raise TTCParamError(f"{ROOT}.beam.width",
                            f"{params.beam.width} is above this engine's limit of {facts.max_beam_width}{limits}")
    named = [(f"{ROOT}.decoding.{i}", decoders, d) for i, d in enumerate(params.decoding)]
    if params.control is not None:
        named.append((f"{ROOT}.control", controls, params.control))
    for prefix, registry, item in named:
        check = getattr(registry.get(item.name), "check", None)
        if check is None:
            continue
        try:
            check(item.args, facts)
        except TTCParamError as exc:
            raise TTCParamError(f"{prefix}.{exc.field}", exc.message) from None
