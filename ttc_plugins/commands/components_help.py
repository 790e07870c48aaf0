"""Help text that lists the registered search strategies and scorers (``ttc run --help``,
``ttc bench --help``).

The lists come from the plugin manager when the help is shown, so a strategy or scorer a
third-party plugin registers appears next to the built-in ones, and ``ttc --help`` never pays for
loading plugins.
"""

from __future__ import annotations

from typing import Any

import typer.core
from rich.markup import escape

__all__ = ["ComponentsHelpCommand", "components_epilog"]


def components_epilog() -> str:
    """Two paragraphs: the registered search strategies, then the registered scorers (one line
    saying why instead, when the plugins fail to load)."""
    from ..manager import get_plugin_manager

    try:
        pm = get_plugin_manager()
    except Exception as exc:  # a broken plugin must not take --help down; ttc doctor names it
        return f"Registered strategies and scorers: unavailable ({type(exc).__name__}: {exc}); run ttc doctor."
    strategies = ", ".join(pm.strategies.names()) or "none"
    scorers = ", ".join(pm.scorers.names()) or "none"
    return f"Registered search strategies: {strategies}.\n\nRegistered scorers: {scorers}."


class ComponentsHelpCommand(typer.core.TyperCommand):
    """A typer command whose help ends with :func:`components_epilog`."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        epilog = components_epilog()
        # typer renders the epilog as rich markup (its default mode): plugin names are literal text.
        self.epilog = escape(epilog) if getattr(self, "rich_markup_mode", None) == "rich" else epilog
        super().format_help(ctx, formatter)
