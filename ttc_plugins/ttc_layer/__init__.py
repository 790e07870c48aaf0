"""The Test-Time Control layer as an adapter that engines can host (see :mod:`.adapter`)."""

from .adapter import TTCAdapter, TTCAdapterConfig

__all__ = ["TTCAdapter", "TTCAdapterConfig"]
