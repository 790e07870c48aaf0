"""The per-request ``ttc`` parameters: parsed once in the frontend, errors name the field.

Wire format (JSON only; vLLM ``SamplingParams.extra_args["ttc"]`` / HTTP ``vllm_xargs``, SGLang
sampling params)::

    {"control":  {"name": "steering", "layers": [2], "vector": [...], "scale": 4.0},
     "decoding": [{"name": "force_token", "token_id": 42}],
     "search":   {"strategy": "beam", "width": 4, ...},
     "beam":     {"width": 4, "length_penalty": 1.0, "early_stopping": false}}

Every key is optional. Each named component validates its own arguments with its ``Params``
model; unknown keys anywhere are errors, so a misspelled field never silently does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from pydantic import BaseModel, ValidationError

from .errors import TTCParamError
from .token_beam import BeamParams

if TYPE_CHECKING:  # pragma: no cover
    from .registry import Registry

ROOT = "ttc"
_TOP_LEVEL = ("control", "decoding", "search", "beam")


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


def _validate(field: str, model: type[BaseModel], args: Mapping[str, Any]) -> BaseModel:
    try:
        return model.model_validate(dict(args))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
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
    return NamedParams(name=name, args=_validate(field, component.Params, args))


def parse_ttc_params(
    raw: Any, *, controls: "Registry", decoders: "Registry", strategies: "Registry"
) -> TTCParams | None:
    """Validate a request's raw ``ttc`` value; ``None`` (absent) means the request did not opt in.

    :raises TTCParamError: with the dotted field path, e.g. ``ttc.control.scale``.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise TTCParamError(ROOT, f"must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_TOP_LEVEL))
    if unknown:
        raise TTCParamError(f"{ROOT}.{unknown[0]}", f"unknown field; allowed: {', '.join(_TOP_LEVEL)}")
    control = None
    if raw.get("control") is not None:
        control = _named(f"{ROOT}.control", raw["control"], controls)
    decoding_raw = raw.get("decoding") or []
    if isinstance(decoding_raw, Mapping):
        decoding_raw = [decoding_raw]
    if not isinstance(decoding_raw, list):
        raise TTCParamError(f"{ROOT}.decoding", "must be a list of objects, each with a 'name'")
    decoding = tuple(_named(f"{ROOT}.decoding.{i}", d, decoders) for i, d in enumerate(decoding_raw))
    search = None
    if raw.get("search") is not None:
        search = _named(f"{ROOT}.search", raw["search"], strategies, name_key="strategy")
    beam = None
    if raw.get("beam") is not None:
        if not isinstance(raw["beam"], Mapping):
            raise TTCParamError(f"{ROOT}.beam", f"must be an object, got {type(raw['beam']).__name__}")
        beam = _validate(f"{ROOT}.beam", BeamParams, raw["beam"])
        others = [k for k in ("control", "decoding", "search") if raw.get(k)]
        if others:
            raise TTCParamError(f"{ROOT}.beam", f"cannot be combined with {ROOT}.{others[0]}")
    return TTCParams(control=control, decoding=decoding, search=search, beam=beam)
