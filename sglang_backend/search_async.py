""":class:`~ttc_plugins.search.engine.EngineOps` over the ``TokenizerManager`` of SGLang's own
HTTP server (``python -m sglang.launch_server``), for
:func:`ttc_plugins.search.driver.arun_search`.

Semantics are those of :class:`~.search_ops.SGLangEngineOps` (this class subclasses it and only
replaces how a batch reaches the engine): every batch is one ``GenerateReqInput`` with one entry per
continuation, handed to ``tokenizer_manager.generate_request`` on the server's event loop, so the
scheduler batches it with whatever else the server is serving (other clients' searches and plain
requests) and the radix cache shares prefixes across all of them. No HTTP hop per round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ttc_plugins.search.engine_async import ThreadedAsyncOps

from .search_ops import SGLangEngineOps

__all__ = ["AsyncSGLangEngineOps"]


class _ServedEngine:
    """The part of ``sglang.Engine`` that :class:`SGLangEngineOps` uses, over a server's
    ``TokenizerManager`` (what ``Engine.async_generate`` does, minus the engine)."""

    def __init__(self, tokenizer_manager: Any):
        self.tokenizer_manager = tokenizer_manager
        self.server_args = tokenizer_manager.server_args

    async def async_generate(self, **kw: Any) -> Any:
        from sglang.srt.managers.io_struct import GenerateReqInput

        return await self.tokenizer_manager.generate_request(GenerateReqInput(**kw), None).__anext__()


class AsyncSGLangEngineOps(ThreadedAsyncOps, SGLangEngineOps):
    """EngineOps inside SGLang's HTTP server (see the module docstring).

    :param tokenizer_manager: the server's ``TokenizerManager``.
    :param loop: the server's event loop (default: the running loop).
    :param seeded: per-continuation seeds; default: whether the server runs with
        ``--enable-deterministic-inference`` (SGLang ignores seeds otherwise; not available on CPU).
    :param embedder, pm, add_bos, kv_poll_s, reward_models: as for :class:`~.search_ops.SGLangEngineOps`.
    """

    name = "sglang-server"

    def __init__(self, tokenizer_manager: Any, *, loop: asyncio.AbstractEventLoop | None = None,
                 seeded: bool | None = None, embedder: Callable[[Sequence[str]], list[list[float]]] | None = None,
                 pm: Any = None, add_bos: bool = True, kv_poll_s: float | None = 0.005,
                 reward_models: Mapping[str, Any] | None = None):
        engine = _ServedEngine(tokenizer_manager)
        if seeded is None:
            seeded = bool(getattr(engine.server_args, "enable_deterministic_inference", False))
        SGLangEngineOps.__init__(self, engine, embedder=embedder, pm=pm, seeded=seeded, add_bos=add_bos,
                                 kv_poll_s=kv_poll_s, reward_models=reward_models)
        self._init_async(loop)

    def _complete(self, coro: Any) -> Any:
        return self._on_loop(coro)
