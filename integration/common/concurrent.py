"""Start several client calls at the same instant (the "many clients" checks of both servers)."""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence


def run_at_once(calls: Sequence[Callable[[], Any]], timeout_s: float) -> list[Any]:
    """Each call in its own thread, released together; their results in order. Raises the first
    error any call raised (after all finished)."""
    out: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(calls))

    def go(i: int) -> None:
        try:
            barrier.wait()
            out[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout_s)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), f"a call did not finish in {timeout_s} s"
    return out
