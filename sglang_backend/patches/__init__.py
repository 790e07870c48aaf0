"""The SGLang seams the backend hooks, one per module (see ``LEDGER.md`` for why and how long).

Each module declares ``TARGETS`` (the dotted paths it hooks, through SGLang's ``HookRegistry``: one
per module), ``HOOK_TYPE``
(BEFORE/AFTER/AROUND; never REPLACE) and ``hook``. :func:`install` checks every target still
resolves, then registers them; SGLang's ``load_plugins`` applies them right after. SGLang's
``apply_hooks`` only logs a target it cannot patch, so :func:`verify_applied` re-checks afterwards.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from .. import SeamMissing

PATCH_MODULES: tuple[str, ...] = (
    "frontend_refuse_pickles",
    "frontend_tokenized",
    "frontend_report_finished",
    "frontend_serve_search",
    "worker_req_context",
    "worker_accept_token",
    "worker_model_loaded",
    "worker_forward_controls",
    "worker_sampler_logits",
    "worker_sampler_raw_logprobs",
    "worker_beam_admit",
    "worker_beam_select",
    "worker_beam_report",
)



def patch_modules() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{name}") for name in PATCH_MODULES]


def resolve(target: str):
    try:
        return pkgutil.resolve_name(target)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SeamMissing(
            f"ttc-plugins: SGLang seam {target} is gone ({type(exc).__name__}: {exc}); this SGLang is not "
            f"supported by this ttc-plugins release (see sglang_backend/patches/LEDGER.md)"
        ) from exc


def install() -> list[str]:
    """Register every patch with SGLang's HookRegistry; returns the targets."""
    from sglang.srt.plugins.hook_registry import HookRegistry

    mods = patch_modules()
    targets = [(mod, target) for mod in mods for target in mod.TARGETS]
    for _, target in targets:
        resolve(target)
    for mod, target in targets:  # once per process: register() guards re-entry
        HookRegistry.register(target, mod.hook, mod.HOOK_TYPE)
    return [target for _, target in targets]


def is_applied(target: str, hook) -> bool:
    """Whether ``hook`` is in the wrapper chain now bound at ``target``."""
    fn = resolve(target)
    while fn is not None:
        closure = getattr(fn, "__closure__", None) or ()
        if any(getattr(c, "cell_contents", None) is hook for c in closure):
            return True
        fn = getattr(fn, "__wrapped__", None)
    return False


def verify_applied(targets: list[ModuleType] | None = None) -> None:
    missing = [t for m in (targets or patch_modules()) for t in m.TARGETS if not is_applied(t, m.hook)]
    if missing:
        raise SeamMissing(f"ttc-plugins: SGLang did not apply the backend's hooks on: {', '.join(missing)}")
