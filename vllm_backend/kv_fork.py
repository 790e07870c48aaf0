"""Share a running request's KV blocks with a new request: the block-table half of a branch fork.

The child gets the parent's blocks up to ``num_tokens`` computed tokens: every full block by
reference (one more ref count on the same block, no copy, no recompute), and the last partial
block, which both will keep writing into, as a private copy. The copy reuses vLLM's own
copy-on-write path for partial prefix-cache hits (``SingleTypeKVCacheManager._apply_cow``): the
pair lands in the manager's pending copies, ``Scheduler.schedule`` ships it to the worker in
``SchedulerOutput.kv_cache_block_copies``, and the model runner copies the block in every layer
before the forward that first reads it; the retained refs are released once that step ran.

Private vLLM state touched (LEDGER.md, "kv_fork"): ``KVCacheManager.coordinator.
single_type_managers``, ``SingleTypeKVCacheManager.{req_to_blocks, num_cached_block, block_pool,
_apply_cow}``, ``BlockPool.{touch, get_new_blocks, get_num_free_blocks}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: managers whose block table is a plain append-only list of blocks (what a fork may copy)
FORKABLE_MANAGERS = ("FullAttentionManager",)


@dataclass(frozen=True)
class ForkShare:
    """What one fork shared: full blocks by reference, tokens of the copied tail block."""

    shared_blocks: int
    copied_tokens: int


def forkable(kv_cache_manager: Any) -> bool:
    """Whether every KV cache group of the engine is plain full attention (block lists a fork may
    share); sliding-window, Mamba and hybrid groups keep other per-request state."""
    managers = kv_cache_manager.coordinator.single_type_managers
    return bool(managers) and all(type(m).__name__ in FORKABLE_MANAGERS for m in managers)


def blocks_needed(kv_cache_manager: Any, num_tokens: int) -> int:
    """Fresh blocks a fork at ``num_tokens`` computed tokens takes from the pool (the tail copy)."""
    return sum(1 for m in kv_cache_manager.coordinator.single_type_managers if num_tokens % m.block_size)


def free_blocks(kv_cache_manager: Any) -> int:
    return kv_cache_manager.block_pool.get_num_free_blocks()


def share_prefix(kv_cache_manager: Any, parent_id: str, child_id: str, num_tokens: int) -> ForkShare:
    """Give ``child_id`` the KV of the first ``num_tokens`` tokens of ``parent_id``.

    The caller checked :func:`forkable` and that :func:`blocks_needed` blocks are free; the child
    must not hold blocks yet.
    """
    shared = copied = 0
    for mgr in kv_cache_manager.coordinator.single_type_managers:
        size = mgr.block_size
        parent_blocks = mgr.req_to_blocks[parent_id]
        num_blocks = -(-num_tokens // size)
        if len(parent_blocks) < num_blocks:
            raise RuntimeError(f"request {parent_id} holds {len(parent_blocks)} blocks, {num_blocks} needed "
                               f"for {num_tokens} computed tokens")
        if child_id in mgr.req_to_blocks:
            raise RuntimeError(f"request {child_id} already holds blocks")
        blocks = list(parent_blocks[:num_blocks])
        mgr.block_pool.touch(blocks)  # one ref per holder: the child now holds them all
        mgr.req_to_blocks[child_id] = blocks
        full = num_tokens // size
        # blocks already registered in the prefix cache: the child re-registers none of them
        mgr.num_cached_block[child_id] = min(mgr.num_cached_block.get(parent_id, 0), full)
        if num_tokens % size:
            tail = mgr.block_pool.get_new_blocks(1)[0]
            # swaps the tail for the copy; the source keeps the child's touch until the copy ran
            mgr._apply_cow(child_id, full, blocks[full], tail)
            copied += num_tokens - full * size
        shared += full
    return ForkShare(shared_blocks=shared, copied_tokens=copied)


def blocks_in_use(kv_cache_manager: Any) -> int:
    """Blocks referenced by some request right now (the pool minus free and the null block)."""
    pool = kv_cache_manager.block_pool
    return pool.num_gpu_blocks - 1 - pool.get_num_free_blocks()
