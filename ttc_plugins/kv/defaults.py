"""Default plugin: the KV-management hooks every backend can rely on.

- cache salt: a controlled request is isolated by its control's key; plain requests share;
- fork: by prefix (children re-submit the parent's tokens; the engine's prefix cache shares
  the full blocks), each child taking a reference to the parent's engine-held state
  (:mod:`.held`) so a backend able to fork in place does so at the child's next step;
- release: drop the branches' references to engine-held state (the engine frees it once the last
  reference goes);
- eviction: drop the lowest-scored branches until the live KV fits the budget.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

from .. import hookimpl
from ..types import Branch, KVStats
from . import held

if TYPE_CHECKING:  # pragma: no cover
    from ..types import RequestContext

@hookimpl(trylast=True)
def ttc_cache_salt(ctx: "RequestContext") -> str | None:
    return ctx.control.key if ctx.control is not None else None


@hookimpl(trylast=True)
def ttc_fork_branch(ctx: "RequestContext", parent: Branch, k: int) -> list[Branch]:
    if k < 1:
        raise ValueError(f"fork needs k >= 1, got {k}")
    if parent.finished:
        raise ValueError(f"branch {parent.id} is finished ({parent.finish_reason}); it cannot be forked")
    # Children are numbered per parent, so ids are a function of the tree, not of what else runs.
    first, parent.num_children = parent.num_children, parent.num_children + k
    return [
        replace(
            parent,
            id=f"{parent.id}.{first + i}",
            parent_id=parent.id,
            num_children=0,
            steps=list(parent.steps),
            scores=list(parent.scores),
            kv=KVStats(),
            handle=held.retain(parent.handle),
        )
        for i in range(k)
    ]


@hookimpl(trylast=True)
def ttc_release_branches(ctx: "RequestContext", branches: Sequence[Branch]) -> None:
    for b in branches:
        handle, b.handle = b.handle, None
        held.release(handle)


def branch_score(branch: Branch) -> float:
    return branch.scores[-1].value if branch.scores else 0.0


@hookimpl(trylast=True)
def ttc_select_evictions(ctx: "RequestContext", branches: Sequence[Branch], kv_budget_tokens: int) -> list[str]:
    held = sum(len(b.all_token_ids) for b in branches)
    evict: list[str] = []
    for b in sorted(branches, key=branch_score):
        if held <= kv_budget_tokens or len(evict) == len(branches) - 1:
            break
        evict.append(b.id)
        held -= len(b.all_token_ids)
    return evict
