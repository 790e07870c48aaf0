"""Exceptions with messages that say what to fix."""

from __future__ import annotations


class TTCError(Exception):
    """Base class of every error ttc-plugins raises on purpose."""


class TTCParamError(TTCError, ValueError):
    """A request's ``ttc`` parameters are invalid. ``field`` is the dotted path of the offending
    field (``ttc.control.scale``); servers turn this into an HTTP 400 naming it."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class RewardModelUnavailable(TTCError):
    """The reward model a search is scored by did not answer (down, unreachable, or it failed).
    Servers answer the search with an HTTP 503 naming the model; the server itself keeps serving."""

    def __init__(self, model: str, why: str):
        self.model = model
        super().__init__(f"reward model {model!r} is unavailable: {why}")


class PluginLoadError(TTCError):
    """A plugin named in ``TTC_PLUGINS`` is missing, or an installed plugin failed to load."""


class UnsupportedEngineError(TTCError):
    """The installed engine version is outside the range this release supports."""
