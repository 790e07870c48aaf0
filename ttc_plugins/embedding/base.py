"""The embedder contract and the per-process instances the registry hands out."""

from __future__ import annotations

import threading
from typing import ClassVar, Sequence

from pydantic import BaseModel, ConfigDict

from ttc_plugins.request_model import RequestModel


class EmbedderParams(RequestModel):
    """No request-level arguments yet; the registry still wants a Params model per component."""

    model_config = ConfigDict(frozen=True)


class Embedder:
    """Base class of registered embedders.

    Subclasses set ``name`` (the value of a strategy's ``embedder`` parameter) and
    ``cluster_distance`` (the cosine distance under which two steps count as the same idea: it
    depends on how the embedder spreads texts, so it belongs to the embedder), and implement
    ``__call__(texts) -> list[list[float]]`` (one L2-normalised vector per text, one dimension).
    Instances are shared by every search of a process (:func:`embedder_instance`), so a call must
    be safe from several threads at once.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = EmbedderParams
    cluster_distance: ClassVar[float] = 0.3

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this embedder cannot run in this environment (a missing package), else None.
        Must be cheap: it is checked when a request is validated."""
        return None

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:  # pragma: no cover - abstract
        raise NotImplementedError


_instances: dict[type, Embedder] = {}
_lock = threading.Lock()


def embedder_instance(cls: type[Embedder]) -> Embedder:
    """The process-wide instance of ``cls`` (built on first use): a model-backed embedder loads
    its weights once per process, not once per search."""
    with _lock:
        inst = _instances.get(cls)
        if inst is None:
            inst = _instances[cls] = cls()
        return inst
