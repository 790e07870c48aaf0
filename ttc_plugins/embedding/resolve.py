"""Which embedder a search uses: a registered name, ``"engine"`` (the engine's own ``embed``
call), or by default ``minilm`` when it can run here and the engine's otherwise."""

from __future__ import annotations

from typing import Any

from ..errors import TTCParamError
from .base import Embedder

ENGINE = "engine"  # reserved: the engine's embed call, not a registered embedder
DEFAULT = "minilm"


def resolve_embedder(pm: Any, requested: str | None, field: str = "ttc.search.embedder") -> type[Embedder] | None:
    """The embedder class for ``requested`` (``None``: the engine's ``embed``).

    :raises TTCParamError: naming ``field`` for an unknown name, or a known one whose package is
        missing here (so a server answers 400 before any engine call).
    """
    if requested is None:
        default = pm.embedders.get(DEFAULT) if DEFAULT in pm.embedders else None
        return default if default is not None and default.unavailable_reason() is None else None
    if requested == ENGINE:
        return None
    if requested not in pm.embedders:
        known = ", ".join([ENGINE, *pm.embedders.names()])
        raise TTCParamError(field, f"unknown embedder {requested!r}; registered: {known}")
    cls = pm.embedders.get(requested)
    reason = cls.unavailable_reason()
    if reason is not None:
        raise TTCParamError(field, reason)
    return cls
