"""The plugin manager: default plugins, entry-point plugins, and the component registries.

Loading is controlled by environment variables (read when the manager is built):

``TTC_PLUGINS``
    Comma-separated allow-list of entry-point plugin names (group ``ttc_plugins``). A listed name
    that no installed distribution provides is an error naming it. Unset: load every installed
    plugin. Default plugins always load; they are registered exactly like external ones.
``TTC_DISABLE_PLUGIN_AUTOLOAD``
    ``1``: load no entry-point plugin unless ``TTC_PLUGINS`` names it.
``TTC_TRACE_PLUGINS``
    ``1``: log every hook call, its arguments and results (logger ``ttc_plugins.trace``).

After loading, ``check_pending()`` rejects any ``ttc_*`` implementation that matches no spec, so a
misspelled hook fails at load instead of never being called.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginLoadError
from .params import TTCParams, parse_ttc_params
from .registry import Registry
from .types import EngineFacts

ENTRY_POINT_GROUP = "ttc_plugins"
# Default plugins load exactly like entry points: "module" or "module:Class". A class (here or in
# an entry point) is instantiated with the manager, for plugins that need the registries.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "ttc_plugins.controls.relay:ControlRelay",
    "ttc_plugins.controls.steering",
    "ttc_plugins.controls.ttc_layer",
    "ttc_plugins.decoding.relay:DecoderRelay",
    "ttc_plugins.decoding.builtin",
    "ttc_plugins.kv.defaults",
    "ttc_plugins.embedding.hashing",
    "ttc_plugins.embedding.minilm",
    "ttc_plugins.search.best_of_n",
    "ttc_plugins.search.self_consistency",
    "ttc_plugins.search.beam",
    "ttc_plugins.search.dvts",
    "ttc_plugins.search.rebase",
    "ttc_plugins.search.ets",
    "ttc_plugins.search.mcts",
    "ttc_plugins.search.astar",
    "ttc_plugins.search.particle_filter",
    "ttc_plugins.search.first_finish",
    "ttc_plugins.scoring.verifiers",
    "ttc_plugins.scoring.step_checker",
    "ttc_plugins.scoring.self_eval",
    "ttc_plugins.scoring.prm",
)

log = logging.getLogger("ttc_plugins")
trace_log = logging.getLogger("ttc_plugins.trace")


def _import_object(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    return [x.strip() for x in raw.split(",") if x.strip()]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin, for ``ttc doctor`` and logs."""

    name: str
    source: str
    hooks: tuple[str, ...]


class TTCPluginManager:
    """pluggy's manager plus the five component registries, with a typed facade.

    Build one per process with :func:`get_plugin_manager`; tests may build their own with
    ``TTCPluginManager(load_entrypoints=False)`` and register throwaway plugins.
    """

    def __init__(self, *, load_entrypoints: bool = True, trace: bool | None = None):
        self.pm = pluggy.PluginManager("ttc")
        self.pm.add_hookspecs(hookspecs)
        self._sources: dict[str, str] = {}
        self.strategies: Registry = Registry("search strategy")
        self.scorers: Registry = Registry("scorer")
        self.controls: Registry = Registry("control")
        self.decoders: Registry = Registry("decoder")
        self.embedders: Registry = Registry("embedder")
        for spec in DEFAULT_PLUGINS:
            self.register(self._instantiate(_import_object(spec)), name=spec.split(":")[0], source="default")
        if load_entrypoints:
            self._load_entrypoints()
        self.check_pending()
        self._call_registration_hooks()
        if trace if trace is not None else _env_flag("TTC_TRACE_PLUGINS"):
            self.enable_tracing()

    # -- loading -----------------------------------------------------------------------------
    def register(self, plugin: object, name: str | None = None, source: str = "api") -> str:
        """Register a plugin object or module; returns its name. Late plugins still receive the
        historic registration hooks, so their components land in the registries."""
        registered = self.pm.register(plugin, name=name)
        if registered is None:
            raise PluginLoadError(f"plugin {name or plugin!r} is blocked or already registered")
        self._sources[registered] = source
        return registered

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._sources.pop(name, None)

    def _load_entrypoints(self) -> None:
        allow = _env_list("TTC_PLUGINS")
        autoload = not _env_flag("TTC_DISABLE_PLUGIN_AUTOLOAD")
        found: dict[str, EntryPoint] = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        if allow is not None:
            missing = [n for n in allow if n not in found]
            if missing:
                raise PluginLoadError(
                    f"TTC_PLUGINS names plugin(s) not installed: {', '.join(missing)}; "
                    f"installed in group {ENTRY_POINT_GROUP!r}: {', '.join(sorted(found)) or 'none'}"
                )
        for name, ep in sorted(found.items()):
            if allow is not None and name not in allow:
                continue
            if allow is None and not autoload:
                continue
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "unknown distribution"
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must say who it is
                raise PluginLoadError(
                    f"plugin {name!r} ({ep.value}, from {dist}) failed to import: {type(exc).__name__}: {exc}. "
                    f"Fix or uninstall it, or leave it out of TTC_PLUGINS."
                ) from exc
            self.register(self._instantiate(plugin), name=name, source=f"entry point ({dist})")

    def _instantiate(self, plugin: Any) -> Any:
        return plugin(self) if isinstance(plugin, type) else plugin

    def check_pending(self) -> None:
        """Fail on any ``ttc_*`` implementation that matches no hook spec (a misspelled hook)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(f"{exc}. Check the hook name against ttc_plugins.hookspecs.") from exc

    def _call_registration_hooks(self) -> None:
        hook = self.pm.hook
        hook.ttc_register_search_strategies.call_historic(kwargs={"register": self.strategies.register})
        hook.ttc_register_scorers.call_historic(kwargs={"register": self.scorers.register})
        hook.ttc_register_controls.call_historic(kwargs={"register": self.controls.register})
        hook.ttc_register_decoders.call_historic(kwargs={"register": self.decoders.register})
        hook.ttc_register_embedders.call_historic(kwargs={"register": self.embedders.register})

    def enable_tracing(self) -> None:
        def before(hook_name: str, hook_impls: list, kwargs: dict[str, Any]) -> None:
            trace_log.info("call %s(%s) -> %d impl(s)", hook_name, ", ".join(kwargs), len(hook_impls))

        def after(outcome: Any, hook_name: str, hook_impls: list, kwargs: dict[str, Any]) -> None:
            exc = outcome.exception
            trace_log.info("done %s: %s", hook_name, f"raised {exc!r}" if exc else repr(outcome.get_result())[:200])

        self.pm.add_hookcall_monitoring(before, after)

    # -- facade ------------------------------------------------------------------------------
    @property
    def hook(self) -> Any:
        return self.pm.hook

    def has_impls(self, hook_name: str) -> bool:
        """Whether any plugin implements ``hook_name`` (lets hot paths skip empty hooks)."""
        return bool(getattr(self.pm.hook, hook_name).get_hookimpls())

    def parse_params(self, raw: Any, facts: EngineFacts | None = None) -> TTCParams | None:
        """Validate a request's raw ``ttc`` section (see :mod:`ttc_plugins.params`); with ``facts``
        (the frontend's), also check it against the served model."""
        return parse_ttc_params(raw, controls=self.controls, decoders=self.decoders, strategies=self.strategies,
                                facts=facts)

    def plugins(self) -> list[PluginInfo]:
        out = []
        for name, plugin in self.pm.list_name_plugin():
            hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()))
            out.append(PluginInfo(name=name, source=self._sources.get(name, "api"), hooks=hooks))
        return sorted(out, key=lambda p: (p.source != "default", p.name))


_manager: TTCPluginManager | None = None
_lock = threading.Lock()


def get_plugin_manager() -> TTCPluginManager:
    """The process-wide manager, built on first use (thread-safe)."""
    global _manager
    with _lock:
        if _manager is None:
            _manager = TTCPluginManager()
            log.debug("ttc plugins loaded: %s", ", ".join(p.name for p in _manager.plugins()))
        return _manager


def reset_plugin_manager() -> None:
    """Forget the process-wide manager (tests, or after changing TTC_* variables)."""
    global _manager
    with _lock:
        _manager = None


def plugin_report() -> list[PluginInfo]:
    """Plugins of the process-wide manager, defaults first."""
    return get_plugin_manager().plugins()
