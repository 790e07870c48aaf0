"""What :func:`~ttc_plugins.search.driver.arun_search` needs on top of a synchronous EngineOps whose
engine lives on an event loop (an OpenAI server's): the ``aextend`` / ``aembed`` / ``ascore``
coroutines, each running the synchronous call in a worker thread, and :meth:`ThreadedAsyncOps._on_loop`,
which hands one engine batch from that thread to the loop and waits.

The loop stays free while the engine works, so concurrent searches of other clients interleave.
Counters of the EngineOps are updated from worker threads: ``extend``, ``score_logprobs`` and
``verify_prob`` are serialised per EngineOps (one search's calls; other searches have their own).
If the awaiting task is cancelled (the client went away), the batch in flight is cancelled.

Mix in first: ``class AsyncXEngineOps(ThreadedAsyncOps, XEngineOps)``, call :meth:`_init_async`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ..types import Step
from .engine import ExtendRequest

__all__ = ["ThreadedAsyncOps"]

# Search threads mostly wait on the engine; one per concurrent search round.
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="ttc-search")


class ThreadedAsyncOps:
    loop: asyncio.AbstractEventLoop

    def _init_async(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._inflight: set[concurrent.futures.Future] = set()

    # -- the coroutines arun_search awaits -------------------------------------------------------
    async def aextend(self, requests: Sequence[ExtendRequest]) -> list[list[Step]]:
        return await self._in_thread(self.extend, list(requests))

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._in_thread(self.embed, list(texts))

    async def ascore(self, scorer: Any, items: Sequence[Any]) -> list[Any]:
        """``scorer.score(items, self)`` in a worker thread (its engine calls reach the loop)."""
        return await self._in_thread(scorer.score, list(items), self)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await self.loop.run_in_executor(_pool, fn, *args)
        except asyncio.CancelledError:
            for fut in list(self._inflight):  # abort the engine requests of this batch
                fut.cancel()
            raise

    # -- serialised synchronous calls ------------------------------------------------------------
    def extend(self, requests: Sequence[ExtendRequest]) -> list[list[Step]]:
        with self._lock:
            return super().extend(requests)  # type: ignore[misc]

    def score_logprobs(self, pairs):
        with self._lock:
            return super().score_logprobs(pairs)  # type: ignore[misc]

    def verify_prob(self, requests):
        with self._lock:
            return super().verify_prob(requests)  # type: ignore[misc]

    # -- one batch on the loop -------------------------------------------------------------------
    def _on_loop(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the engine's loop from a worker thread and return its result."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            coro.close()
            raise RuntimeError(f"{type(self).__name__}: a synchronous call on the event loop's thread would "
                               "deadlock; await aextend()/aembed() or call it from a worker thread")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        self._inflight.add(fut)
        try:
            return fut.result()
        finally:
            self._inflight.discard(fut)
