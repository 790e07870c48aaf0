"""vLLM symbols that moved between the supported releases (``ttc_plugins/engines/vllm.toml``): one
function per symbol, newest location first. The drift guard ``test_seam_compat_symbols`` checks
that each resolves, with the shape the backend uses, on every release of the matrix.
"""

from __future__ import annotations

from typing import Any, Callable


def usage_info_class() -> type:
    """``UsageInfo``: ``vllm.entrypoints.serve.engine.protocol`` since 0.29,
    ``vllm.entrypoints.openai.engine.protocol`` in 0.27-0.28."""
    try:
        from vllm.entrypoints.serve.engine.protocol import UsageInfo
    except ImportError:  # vLLM 0.27-0.28
        from vllm.entrypoints.openai.engine.protocol import UsageInfo
    return UsageInfo


def create_error_response() -> Callable[..., Any]:
    """``create_error_response(message, err_type, status_code, param)``:
    ``vllm.entrypoints.serve.exception_handling.error_response`` since 0.28,
    ``vllm.entrypoints.serve.utils.error_response`` in 0.27."""
    try:
        from vllm.entrypoints.serve.exception_handling.error_response import create_error_response as fn
    except ImportError:  # vLLM 0.27
        from vllm.entrypoints.serve.utils.error_response import create_error_response as fn
    return fn
