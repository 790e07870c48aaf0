"""ttc-plugins: test-time compute (tree search, KV sharing, hidden-state control) as engine plugins.

The engine-free core: the hook specification (:mod:`ttc_plugins.hookspecs`), the plugin manager
(:mod:`ttc_plugins.manager`), the boundary types (:mod:`ttc_plugins.types`) and the default
plugins. Engine adapters live in ``ttc_plugins.vllm_backend`` and ``ttc_plugins.sglang_backend``,
kernels in ``ttc_plugins.kernels``.
"""

import pluggy

hookimpl = pluggy.HookimplMarker("ttc")

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
