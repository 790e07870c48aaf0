"""Engine-wide settings shared by the backends: the keys both understand and their validation.

Each backend reads its settings from where its engine lets it (vLLM ``additional_config.ttc``,
SGLang ``TTC_SGLANG_CONFIG``), subclasses :class:`EngineConfigBase` with its own keys, and calls
:func:`validate_engine_config`. Unknown keys and bad values stop the engine at start with the key
named. Engine-free: imports neither an engine nor torch.
"""

from __future__ import annotations

from typing import Any, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .controls.vectors import VectorLibrary
from .errors import TTCError

C = TypeVar("C", bound="EngineConfigBase")


class TTCConfigError(TTCError, ValueError):
    """Engine-wide ``ttc`` settings are invalid. ``key`` is the dotted path of the culprit."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


class EngineConfigBase(BaseModel):
    """Keys every backend understands."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Named steering vectors (name -> .json/.npy/.safetensors file) that requests may name.
    vectors: dict[str, str] = Field(default_factory=dict)
    #: Install the per-token residual-stream control on the decoder layers.
    controls: bool = True
    #: TTC adapters hosted by this engine: decoder-layer index -> adapter file (safetensors, see
    #: ttc_plugins.ttc_layer). Requests opt in per request with the ``ttc_layer`` control.
    ttc_layers: dict[int, str] = Field(default_factory=dict)

    def vector_library(self) -> VectorLibrary:
        return VectorLibrary(self.vectors)

    def check_vectors(self, root: str, hidden_size: int | None = None) -> None:
        """Load every named vector now (and check its length when the hidden size is known), so
        a bad file stops the engine at start instead of failing the first request naming it."""
        library = self.vector_library()
        for name in library.names():
            key = f"{root}.vectors.{name}"
            try:
                vector = library.get(name)
            except ValueError as exc:
                raise TTCConfigError(key, str(exc)) from None
            if hidden_size is not None and len(vector) != hidden_size:
                raise TTCConfigError(key, f"has {len(vector)} values; the model's hidden size is {hidden_size}")


    def check_ttc_layers(self, root: str, hidden_size: int | None = None) -> None:
        """Read every hosted adapter file's metadata now (no torch): a missing file, a file with no
        adapter for its layer or one made for another hidden size stops the engine at start.
        The layer count is checked where the model is loaded (:func:`ttc_plugins.ttc_layer.hosting.load_hosted`)."""
        from .ttc_layer.config import base_model_mismatch, read_adapter_file

        for layer, path in self.ttc_layers.items():
            key = f"{root}.ttc_layers.{layer}"
            if layer < 0:
                raise TTCConfigError(key, "layer indices must be >= 0")
            try:
                info = read_adapter_file(path)
                info.prefix(layer)  # a multi-layer file must hold one for this layer
            except ValueError as exc:
                raise TTCConfigError(key, str(exc)) from None
            why = base_model_mismatch(info, hidden_size=hidden_size)
            if why is not None:
                raise TTCConfigError(key, why)

    def control_facts(self) -> dict[str, Any]:
        """The :class:`~ttc_plugins.types.EngineFacts` fields this configuration decides, for an
        engine whose controls are available (``ttc_layers``, ``ttc_horizons``, ``vectors``): both
        frontends build them here, so what requests are checked against cannot differ by engine."""
        return {"ttc_layers": tuple(sorted(self.ttc_layers)), "ttc_horizons": self.hosted_horizons(),
                "vectors": self.vector_library()}

    def hosted_horizons(self) -> dict[int, tuple[int, int]]:
        """Layer -> the horizon range its adapter was trained at, for files that record one (a
        request asking for a horizon outside it is refused; 0, off, always passes)."""
        from .ttc_layer.config import read_adapter_file

        ranges = {layer: read_adapter_file(path).horizon for layer, path in self.ttc_layers.items()}
        return {layer: (int(r[0]), int(r[1])) for layer, r in ranges.items() if r is not None}


def validate_engine_config(model: type[C], raw: Any, root: str) -> C:
    """Validate ``raw`` (a JSON object) against ``model``; errors name ``<root>.<key>``."""
    if not isinstance(raw, Mapping):
        raise TTCConfigError(root, f"must be a JSON object, got {type(raw).__name__}")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = err.get("msg", "invalid value")
        if err.get("type") == "extra_forbidden":
            msg = f"unknown key; allowed: {', '.join(sorted(model.model_fields))}"
        raise TTCConfigError(f"{root}.{loc}" if loc else root, msg) from None
