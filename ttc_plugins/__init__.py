"""ttc-plugins: test-time compute (tree search, KV sharing, hidden-state control) as engine plugins.

The engine-free core: the hook specification (:mod:`ttc_plugins.hookspecs`), the plugin manager
(:mod:`ttc_plugins.manager`), the boundary types (:mod:`ttc_plugins.types`) and the default
plugins. Engine adapters live in ``ttc_plugins.vllm_backend`` and ``ttc_plugins.sglang_backend``,
kernels in ``ttc_plugins.kernels``.
"""

from pathlib import Path

import pluggy

# Imported from a checkout (Python started at the repository root, or an editable install): the
# subpackages that setup.py maps in from the root's vllm_backend/ and sglang_backend/ are found
# there (for an editable install these are the folders its finder maps anyway). A wheel install
# lives in site-packages, has no setup.py beside it, and never takes this branch.
_CHECKOUT = Path(__file__).resolve().parent.parent
if (_CHECKOUT / "setup.py").is_file() and (_CHECKOUT / "vllm_backend" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))  # noqa: F821 - a package's __path__

hookimpl = pluggy.HookimplMarker("ttc")

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
