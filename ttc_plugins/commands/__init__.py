"""Implementations of ``ttc`` sub-commands that live outside :mod:`ttc_plugins.cli` (each module
defines a typer command function; ``cli.py`` attaches it to the app)."""
