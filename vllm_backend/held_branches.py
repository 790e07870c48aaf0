"""Step-level branches that stay in the engine between rounds, so their children fork in place.

A step-level search extends each branch by one step per round, each step one engine request. On
its own, the next round's children are new requests whose prompts extend the branch's tokens: the
prefix cache serves the full blocks and the partial tail block (up to ``block_size - 1`` tokens,
127 on CPU) is computed again for every child. With the TTC scheduler the search asks for more,
through ``SamplingParams.extra_args[BRANCH_KEY]``:

- ``{"hold": key}``: when the request ends without finishing its branch (the frontend stopped it
  at the step delimiter, or it hit the step's token limit) its KV blocks are kept under ``key``
  instead of being freed (EOS or a stop token ends the branch: nothing is kept);
- ``{"fork_from": key}``: a new request whose tokens extend the held request's computed tokens
  joins the batch running, sharing the held blocks (full blocks by reference, the tail block
  copied on the worker, :mod:`.kv_fork`); it computes only what the held request did not;
- release: an abort of ``key`` (``EngineCoreClient.abort_requests([key])``) frees the held blocks.

Holding is an optimisation, never a dependency: a fork whose key is unknown, whose tokens,
cache salt or LoRA differ, or for which no block is free, takes vLLM's normal
path. Held requests are bounded: at most ``8 * max_num_seqs`` of them, each for at most ``ttl_s``
seconds, and the oldest go first when the free block pool runs low, so a client that never
releases cannot pin the cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from vllm.v1.request import Request, RequestStatus

from . import kv_fork
from ttc_plugins.runtime.wire import BRANCH_KEY
#: statuses of a request whose branch may go on (the frontend's stop-string abort, the step limit)
HOLDABLE = (RequestStatus.FINISHED_ABORTED, RequestStatus.FINISHED_LENGTH_CAPPED)

#: held requests are released first when fewer than this share of the pool's blocks is free
LOW_FREE_SHARE = 0.1


def holdable(request: Request) -> bool:
    """Whether a finished request's branch may go on: a status in :data:`HOLDABLE`, or stopped at
    one of its ``stop_token_ids`` (a delimiter token: the search ops pass those; an extra EOS id
    that vLLM adds there is released by the ops, which see it as EOS). The model's own EOS is not
    held: its ``stop_reason`` stays None."""
    if request.status in HOLDABLE:
        return True
    return request.status == RequestStatus.FINISHED_STOPPED and isinstance(request.stop_reason, int)


@dataclass
class _Held:
    request: Request
    since: float


def branch_args(request: Request) -> dict[str, str] | None:
    """The request's ``ttc_branch`` entry (validated in the frontend), or None."""
    sp = request.sampling_params
    raw = (sp.extra_args or {}).get(BRANCH_KEY) if sp is not None else None
    return raw if isinstance(raw, dict) else None


def _same_lora(a: Request, b: Request) -> bool:
    ida = a.lora_request.lora_int_id if a.lora_request is not None else 0
    idb = b.lora_request.lora_int_id if b.lora_request is not None else 0
    return ida == idb


def common_prefix(a: Any, b: Any, limit: int) -> int:
    n = 0
    for x, y in zip(a, b):
        if n >= limit or x != y:
            break
        n += 1
    return n


class HeldBranches:
    """The scheduler's held step requests, by key (see the module docstring).

    :param scheduler: the :class:`~.beam_scheduler.TTCScheduler` owning the KV cache manager.
    :param adopt: ``adopt(child, parent, num_tokens)`` puts ``child`` in the running batch sharing
        the first ``num_tokens`` computed tokens of ``parent`` (the scheduler's fork primitive);
        returns False when it cannot (no free slot or block).
    """

    def __init__(self, scheduler: Any, adopt: Callable[[Request, Request, int], bool], *, ttl_s: float = 60.0):
        self.scheduler = scheduler
        self.adopt = adopt
        self.ttl_s = ttl_s
        # many searches hold several branches each; the pool-pressure rule is what guards memory
        self.max_held = 8 * max(1, scheduler.max_num_running_reqs)
        self.held: dict[str, _Held] = {}
        self.hold_keys: dict[str, str] = {}  # live request id -> key it is held under when it ends
        self.counters = {"held": 0, "forks_in_place": 0, "forks_missed": 0, "released": 0, "expired": 0,
                         "tokens_shared": 0}

    # -- request lifecycle ---------------------------------------------------------------------
    def on_add(self, request: Request) -> bool:
        """Note a hold request; fork a ``fork_from`` one in place. True when the request was
        adopted into the running batch (the caller must not enqueue it)."""
        args = branch_args(request)
        if args is None:
            return False
        if args.get("hold"):
            self.hold_keys[request.request_id] = args["hold"]
        parent_key = args.get("fork_from")
        if not parent_key:
            return False
        entry = self.held.get(parent_key)
        if entry is not None:
            parent = entry.request
            n = common_prefix(parent.all_token_ids, request.prompt_token_ids,
                              min(parent.num_computed_tokens, request.num_prompt_tokens - 1))
            if (n > 0 and parent.cache_salt == request.cache_salt and _same_lora(parent, request)
                    and self.adopt(request, parent, n)):
                self.counters["forks_in_place"] += 1
                self.counters["tokens_shared"] += n
                return True
        self.counters["forks_missed"] += 1
        return False

    def keep(self, request: Request) -> bool:
        """Called instead of freeing a finished request's blocks: True when they are held."""
        key = self.hold_keys.pop(request.request_id, None)
        if key is None or not holdable(request) or key in self.held or not request.num_computed_tokens:
            return False
        if len(self.held) >= self.max_held:
            self._release(next(iter(self.held)), "expired")  # the oldest
        self.held[key] = _Held(request, time.monotonic())
        self.counters["held"] += 1
        return True

    def release(self, keys: Any) -> set[str]:
        """Free the held requests among ``keys``; returns the keys that were held. A key whose
        request is still running is released too: it will not be held when it ends. (A search
        cancelled mid-round, its client gone, aborts its running step requests and releases
        their keys at once; the two aborts may reach the scheduler in either order.)"""
        keys = set(keys)
        done = {k for k in keys if k in self.held}
        for k in done:
            self._release(k, "released")
        if self.hold_keys and keys - done:
            self.hold_keys = {rid: k for rid, k in self.hold_keys.items() if k not in keys}
        return done

    def before_schedule(self, reserve: int = 0) -> None:
        """Drop held requests past their lifetime, and the oldest while the pool is nearly empty
        (under a tenth of it free, or fewer free blocks than ``reserve``: one per running beam
        lane, which must never wait for a block)."""
        if not self.held:
            return
        now = time.monotonic()
        for key in [k for k, e in self.held.items() if now - e.since > self.ttl_s]:
            self._release(key, "expired")
        mgr = self.scheduler.kv_cache_manager
        total = mgr.block_pool.num_gpu_blocks
        while self.held and kv_fork.free_blocks(mgr) < max(LOW_FREE_SHARE * total, reserve):
            self._release(next(iter(self.held)), "expired")

    def _release(self, key: str, why: str) -> None:
        entry = self.held.pop(key)
        self.scheduler._free_request_blocks(entry.request)
        self.counters[why] += 1
