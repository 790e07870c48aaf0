"""Shared fixtures. Tests never autoload installed ttc plugins (like pytest's own suite)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from ttc_plugins.manager import TTCPluginManager, reset_plugin_manager


@pytest.fixture(autouse=True)
def _isolated_plugins(monkeypatch):
    monkeypatch.setenv("TTC_DISABLE_PLUGIN_AUTOLOAD", "1")
    for var in ("TTC_PLUGINS", "TTC_TRACE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def pm() -> TTCPluginManager:
    """A fresh manager with the default plugins only."""
    return TTCPluginManager(load_entrypoints=False)


@pytest.fixture
def install_plugin(tmp_path, monkeypatch):
    """Install a throwaway plugin distribution (a real dist-info with an entry point) on sys.path.

    ``install_plugin(name, source)`` writes module ``<name>_mod`` with ``source`` and a
    distribution ``ttc-test-<name>`` exposing it in the ``ttc_plugins`` entry-point group.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def install(name: str, source: str) -> Path:
        module = f"{name}_mod"
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        dist = site / f"ttc_test_{name}-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ttc-test-{name}\nVersion: 1.0\n")
        (dist / "entry_points.txt").write_text(f"[ttc_plugins]\n{name} = {module}\n")
        sys.modules.pop(module, None)
        return site

    return install
