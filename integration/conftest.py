"""Root of the integration suites: which engine runs, and its fixtures.

``pytest integration/vllm integration/conformance --engine vllm`` (what the nox sessions run):
the engine's fixture module (``integration/<engine>/fixtures.py``) is loaded as a plugin, so its
fixtures serve both its own folder and ``integration/conformance/``, the one suite every engine
passes unchanged (same test ids). Without ``--engine``, the engine is the one whose folder is
named on the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    # Appended, not prepended: the repo's ttc_plugins/ must not shadow the installed package.
    sys.path.append(str(ROOT))

ENGINES = ("vllm", "sglang")


def pytest_addoption(parser):
    parser.addoption("--engine", choices=ENGINES, default=None,
                     help="the engine the integration suites (conformance included) run against")


def _engine(config) -> str | None:
    chosen = config.getoption("--engine")
    if chosen:
        return chosen
    named = {e for e in ENGINES for arg in config.args if f"integration/{e}" in Path(arg).as_posix()}
    return named.pop() if len(named) == 1 else None


def pytest_configure(config):
    engine = _engine(config)
    if engine is not None:
        config.pluginmanager.import_plugin(f"integration.{engine}.fixtures")


# -- fixtures every engine's suites share (the engine's own come from its fixture module) -------
@pytest.fixture(scope="session")
def engine_name(pytestconfig) -> str:
    name = _engine(pytestconfig)
    if name is None:
        pytest.skip("no engine chosen (--engine)")
    return name


@pytest.fixture(scope="module")
def memory_ref(tiny_model):
    """The reference engine (plain HF, in process) on the suite's tiny model."""
    from ttc_plugins.testing.memory_engine import MemoryEngine

    return MemoryEngine.from_pretrained(tiny_model)


@pytest.fixture
def ops_pm(engine_ops):
    """(the engine's search ops, their plugin manager, a recorder of the search hooks)."""
    from integration.common.search import recorded_ops

    return recorded_ops(engine_ops)
