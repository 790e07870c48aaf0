"""The plugin manager: defaults, entry points, allow-list, autoload switch, tracing, failures."""

from __future__ import annotations

import logging

import pytest

from ttc_plugins import hookimpl
from ttc_plugins.errors import PluginLoadError
from ttc_plugins.manager import DEFAULT_PLUGINS, TTCPluginManager, get_plugin_manager

GOOD_PLUGIN = """
from pydantic import BaseModel
from ttc_plugins import hookimpl

class Params(BaseModel):
    pass

class Echo:
    name = "echo"
    Params = Params
    @classmethod
    def apply(cls, logits, rows, args):
        pass

@hookimpl
def ttc_register_decoders(register):
    register(Echo)
"""


def test_default_plugins_are_registered_like_external_ones(pm):
    names = {p.name for p in pm.plugins()}
    assert {spec.split(":")[0] for spec in DEFAULT_PLUGINS} <= names
    assert all(p.source == "default" for p in pm.plugins())
    assert "steering" in pm.controls and "force_token" in pm.decoders


def test_entry_point_plugin_is_autoloaded(install_plugin, monkeypatch):
    install_plugin("good", GOOD_PLUGIN)
    monkeypatch.delenv("TTC_DISABLE_PLUGIN_AUTOLOAD")
    pm = TTCPluginManager()
    assert "echo" in pm.decoders
    info = next(p for p in pm.plugins() if p.name == "good")
    assert "ttc-test-good 1.0" in info.source and info.hooks == ("ttc_register_decoders",)


def test_autoload_can_be_disabled_but_allow_list_still_loads(install_plugin, monkeypatch):
    install_plugin("good", GOOD_PLUGIN)
    assert "echo" not in TTCPluginManager().decoders  # TTC_DISABLE_PLUGIN_AUTOLOAD=1 from conftest
    monkeypatch.setenv("TTC_PLUGINS", "good")
    assert "echo" in TTCPluginManager().decoders


def test_allow_list_filters_installed_plugins(install_plugin, monkeypatch):
    install_plugin("good", GOOD_PLUGIN)
    install_plugin("other", GOOD_PLUGIN.replace('"echo"', '"echo2"'))
    monkeypatch.delenv("TTC_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("TTC_PLUGINS", "other")
    pm = TTCPluginManager()
    assert "echo2" in pm.decoders and "echo" not in pm.decoders


def test_unknown_plugin_in_allow_list_names_it(install_plugin, monkeypatch):
    install_plugin("good", GOOD_PLUGIN)
    monkeypatch.setenv("TTC_PLUGINS", "good,nosuchplugin")
    with pytest.raises(PluginLoadError, match="nosuchplugin") as exc:
        TTCPluginManager()
    assert "good" in str(exc.value)  # says what is installed


def test_broken_plugin_fails_with_its_name_and_distribution(install_plugin, monkeypatch):
    install_plugin("broken", "import no_such_module_anywhere\n")
    monkeypatch.setenv("TTC_PLUGINS", "broken")
    with pytest.raises(PluginLoadError, match=r"'broken'.*ttc-test-broken 1\.0.*no_such_module_anywhere"):
        TTCPluginManager()


def test_misspelled_hookimpl_fails_loudly(install_plugin, monkeypatch):
    install_plugin("typo", "from ttc_plugins import hookimpl\n@hookimpl\ndef ttc_proces_logits(batch):\n    pass\n")
    monkeypatch.setenv("TTC_PLUGINS", "typo")
    with pytest.raises(PluginLoadError, match="ttc_proces_logits"):
        TTCPluginManager()


def test_misspelled_hookimpl_registered_by_api_fails_check_pending(pm):
    class Typo:
        @hookimpl
        def ttc_cache_sault(self, ctx):
            return "x"

    pm.register(Typo(), name="typo")
    with pytest.raises(PluginLoadError, match="ttc_cache_sault"):
        pm.check_pending()


def test_component_name_clash_is_an_error(pm):
    from ttc_plugins.controls.steering import SteeringParams

    class Impostor:
        name = "steering"
        Params = SteeringParams

    class Plugin:
        @hookimpl
        def ttc_register_controls(self, register):
            register(Impostor)

    with pytest.raises(PluginLoadError, match="two controls are named 'steering'"):
        pm.register(Plugin(), name="impostor")


def test_component_without_params_model_is_rejected(pm):
    class NoParams:
        name = "bare"

    class Plugin:
        @hookimpl
        def ttc_register_decoders(self, register):
            register(NoParams)

    with pytest.raises(PluginLoadError, match="pydantic `Params`"):
        pm.register(Plugin(), name="bare")


def test_tracing_logs_hook_calls(caplog):
    pm = TTCPluginManager(load_entrypoints=False, trace=True)
    with caplog.at_level(logging.INFO, logger="ttc_plugins.trace"):
        pm.hook.ttc_cache_salt(ctx=__import__("ttc_plugins.types").types.RequestContext("r1"))
    assert any("ttc_cache_salt" in r.getMessage() for r in caplog.records)


def test_tracing_from_environment(monkeypatch, caplog):
    monkeypatch.setenv("TTC_TRACE_PLUGINS", "1")
    pm = get_plugin_manager()
    with caplog.at_level(logging.INFO, logger="ttc_plugins.trace"):
        pm.hook.ttc_release_branches(ctx=None, branches=[])
    assert any("ttc_release_branches" in r.getMessage() for r in caplog.records)


def test_process_manager_is_a_singleton():
    assert get_plugin_manager() is get_plugin_manager()


def test_has_impls(pm):
    assert pm.has_impls("ttc_cache_salt")
    assert not pm.has_impls("ttc_accept_token")
