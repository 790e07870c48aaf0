"""Engine state a branch can be forked from in place, shared by reference count.

A backend that can keep a finished step's request in the engine (its KV blocks held, not freed)
returns a :class:`HeldState` as ``Step.handle``; the branch keeps it as ``Branch.handle``. The
default ``ttc_fork_branch`` gives every child a reference, so the next ``extend`` of a child can
ask the engine to fork from the held request (full blocks shared, the partial tail copied) instead
of re-submitting the prefix. The default ``ttc_release_branches`` drops a branch's reference, and
a branch that takes a step drops the reference to the state it grew from; when the last reference
goes, the backend's release callback frees the engine's copy at once.

A fork that finds the held state already gone is still correct: the engine then serves the
prefix from its cache, as for any new request. Holding is an optimisation, never a dependency.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["HeldState"]


class HeldState:
    """One engine-held request (``key`` names it to the backend), with a reference count."""

    __slots__ = ("key", "owner", "refs", "_release")

    def __init__(self, key: str, release: Callable[[str], None], owner: object = None):
        self.key = key
        #: the backend object that can fork from it (another engine must not try)
        self.owner = owner
        self.refs = 1
        self._release = release

    def retain(self) -> "HeldState":
        if self.refs <= 0:
            raise RuntimeError(f"held state {self.key!r} was already released")
        self.refs += 1
        return self

    def release(self) -> None:
        if self.refs <= 0:
            return
        self.refs -= 1
        if self.refs == 0:
            self._release(self.key)

    @property
    def live(self) -> bool:
        return self.refs > 0

    def __repr__(self) -> str:
        return f"HeldState({self.key!r}, refs={self.refs})"


def retain(handle: object) -> object:
    """A child's reference to its parent's handle (handles that are not :class:`HeldState` are
    backend values without a lifetime: they are shared as they are)."""
    if isinstance(handle, HeldState):
        return handle.retain() if handle.live else None
    return handle


def release(handle: object) -> None:
    if isinstance(handle, HeldState):
        handle.release()
