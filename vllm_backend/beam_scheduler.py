"""vLLM's scheduler plus in-engine branch fork and token-level beam search.

Switch it on with the engine's own flag (the documented scheduler seam; ``LEDGER.md``)::

    --scheduler-cls ttc_plugins.vllm_backend.beam_scheduler.TTCScheduler
    LLM(..., scheduler_cls="ttc_plugins.vllm_backend.beam_scheduler.TTCScheduler")

Plain requests take vLLM's path untouched. A request with ``ttc.beam`` (``{"width": 4, ...}``) is
a whole beam search run inside EngineCore, with no client round trip per token:

- the request itself is the first *lane* (an engine request holding one live beam); after each
  forward, :meth:`update_from_output` hands every lane's top ``2 * width`` raw log-probabilities to
  :class:`ttc_plugins.token_beam.TokenBeam`, which picks the next live beams;
- a lane whose sampled (greedy) token was picked continues in place; every other pick is a
  *fork*: a new lane sharing its parent's KV blocks (full blocks by ref count, the partial tail
  block copied by the worker before the next forward; :mod:`.kv_fork`) whose last token is the
  picked one, so no prefix token is ever recomputed; unpicked lanes are released at once;
- when the search ends the request finishes with the best hypothesis as its tokens, and all
  hypotheses plus the KV accounting travel back in ``kv_transfer_params["ttc_beam"]`` (surfaced
  as ``RequestOutput.ttc["beam"]`` by the output-processor patch).

Forked lanes are engine requests the frontend never sees: their outputs are dropped here, and the
model runner learns about them as new requests (:meth:`schedule` moves them from the cached to the
new-request list of the step that first runs them). Lanes of one search advance in lockstep: a lane
that already proposed waits (parked out of the running queue) until its siblings did. A search
holds ``width`` request slots (``max_num_seqs``) from admission to its end: it waits in its own
queue until they are free, so forks never overflow the running batch.

Step-level search uses the same fork between rounds: a step request marked ``hold`` keeps its KV
when it ends, and the next round's children join the batch forked from it (:mod:`.held_branches`).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from vllm.v1.core.sched.output import CachedRequestData, NewRequestData, SchedulerOutput
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.engine import EngineCoreOutput, EngineCoreOutputs
from vllm.v1.request import Request, RequestStatus

from ttc_plugins.runtime.report import beam_report
from ttc_plugins.runtime.wire import BEAM_REPORT_KEY
from ttc_plugins.token_beam import BeamParams, TokenBeam

from . import kv_fork
from .held_branches import HeldBranches

log = logging.getLogger("ttc_plugins.vllm_backend")


@dataclass
class _Search:
    """One beam search: its rules/scores, the lanes holding its live beams, its accounting."""

    root: Request
    beam: TokenBeam
    lanes: list[Request]
    prompt_len: int
    started: float = field(default_factory=time.monotonic)
    proposals: dict[str, tuple[int, list[tuple[int, float]]]] = field(default_factory=dict)
    root_live: bool = True
    tokens_computed: int = 0
    tokens_shared: int = 0  # prefix tokens a fork gave a child without computing them
    blocks_shared: int = 0
    tokens_copied: int = 0  # tail-block tokens copied for forks
    forks: int = 0
    recompute_forks: int = 0  # forks that fell back to the prefix cache (no free block / slot)
    steps: int = 0
    peak_lanes: int = 1
    peak_blocks: int = 0
    prefill_stats: Any = None
    eos_ids: tuple[int, ...] = ()
    #: KV blocks its lanes could take at most (``width`` full sequences, no sharing counted)
    worst_blocks: int = 0


@contextmanager
def reserved_slots(scheduler: Any, n: int) -> Iterator[None]:
    """Within the block, ``n`` request slots are taken (parked beam lanes, slots a search has not
    forked into yet): vLLM's own admission into RUNNING must leave them free. vLLM checks
    ``max_num_running_reqs`` (all releases) and, from 0.31, admits waiting requests against
    ``max_num_active_reqs`` and then asserts ``len(running) <= max_num_running_reqs``: both caps
    shrink together (lowering only the first let a beam plus plain requests at capacity trip that
    assert and kill the engine core)."""
    caps = {name: getattr(scheduler, name) for name in ("max_num_running_reqs", "max_num_active_reqs")
            if getattr(scheduler, name, None) is not None}
    for name, cap in caps.items():
        setattr(scheduler, name, max(0, cap - n))
    try:
        yield
    finally:
        for name, cap in caps.items():
            setattr(scheduler, name, cap)


class TTCScheduler(Scheduler):
    """``vllm.v1.core.sched.scheduler.Scheduler`` with :meth:`fork_request` and ``ttc.beam``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._searches: dict[str, _Search] = {}  # root request id -> search
        self._lane_search: dict[str, _Search] = {}  # every lane id (root included while live)
        self._fresh: set[str] = set()  # forked lanes the model runner has not seen yet
        self._parked: dict[str, Request] = {}
        self._held: list[_Search] = []  # beam searches waiting for `width` free request slots
        #: forked step requests holding their shared blocks, waiting for a running slot
        self._pending_forks: dict[str, Request] = {}
        self._fork_ids = itertools.count()
        self._forkable = kv_fork.forkable(self.kv_cache_manager)
        #: step-level branches held between rounds (``extra_args["ttc_branch"]``)
        self.held_branches = HeldBranches(self, self._adopt)
        #: engine-wide counters (``searches`` finished, ``forks``, ``tokens_shared``, ...)
        self.ttc_counters: dict[str, int] = {"searches": 0, "forks": 0, "tokens_shared": 0,
                                             "tokens_copied": 0, "recompute_forks": 0}

    # ----------------------------------------------------------------------------------------
    # Fork and release (the engine half of ttc_fork_branch / ttc_release_branches)
    # ----------------------------------------------------------------------------------------

    def fork_request(self, parent_id: str, last_tokens: Iterable[int]) -> list[Request]:
        """Children of a running request, one per entry of ``last_tokens``: each has the parent's
        tokens with the last (sampled, not yet computed) one replaced, and shares the parent's KV.

        :raises ValueError: the parent is unknown, finished or not running.
        """
        parent = self.requests.get(parent_id)
        if parent is None or parent.is_finished():
            raise ValueError(f"cannot fork request {parent_id!r}: it is finished or unknown")
        if parent.status != RequestStatus.RUNNING or parent.num_computed_tokens != parent.num_tokens - 1:
            raise ValueError(f"cannot fork request {parent_id!r}: it is not between two decode steps")
        return [self._fork(parent, tok) for tok in last_tokens]

    def release_request(self, request_id: str) -> None:
        """Drop a forked request and free its blocks (shared blocks stay with their other holders)."""
        self._parked.pop(request_id, None)
        self._fresh.discard(request_id)
        self.finish_requests(request_id, RequestStatus.FINISHED_ABORTED)

    def _fork(self, parent: Request, last_token: int, search: _Search | None = None) -> Request:
        owner = search.root.request_id if search is not None else parent.request_id
        child = Request(
            request_id=f"{owner}~{next(self._fork_ids)}",
            prompt_token_ids=[*list(parent.all_token_ids)[:-1], int(last_token)],
            sampling_params=parent.sampling_params,
            pooling_params=None,
            client_index=parent.client_index,
            arrival_time=parent.arrival_time,
            lora_request=parent.lora_request,
            cache_salt=parent.cache_salt,
            priority=parent.priority,
            block_hasher=parent._block_hasher,
        )
        share = self._adopt(child, parent, parent.num_computed_tokens, wait=False)
        if share is None:
            # no free slot or block for the tail copy: the child prefills, the prefix cache
            # serves its full blocks (vLLM's own n>1 / prefix path)
            self.requests[child.request_id] = child
            self._enqueue_waiting_request(child)
            self.ttc_counters["recompute_forks"] += 1
            if search is not None:
                search.recompute_forks += 1
        elif search is not None:
            search.forks += 1
            search.tokens_shared += parent.num_computed_tokens
            search.blocks_shared += share.shared_blocks
            search.tokens_copied += share.copied_tokens
        return child

    def _run_forked(self, child: Request) -> None:
        child.status = RequestStatus.RUNNING
        self.running.append(child)
        self._fresh.add(child.request_id)

    def _adopt(self, child: Request, parent: Request, n: int, *, wait: bool = True) -> kv_fork.ForkShare | None:
        """Put ``child`` in the running batch holding the KV of ``parent``'s first ``n`` computed
        tokens (its own tokens from ``n`` on are computed as usual). Without a free request slot
        it holds the blocks and waits for one ahead of vLLM's queue (``wait``), else None; None
        when no block for the tail copy is free."""
        has_slot = len(self.running) + len(self._parked) < self.max_num_running_reqs
        if not (
            self._forkable
            and (has_slot or wait)
            and kv_fork.free_blocks(self.kv_cache_manager) > kv_fork.blocks_needed(self.kv_cache_manager, n)
        ):
            return None
        self.requests[child.request_id] = child
        share = kv_fork.share_prefix(self.kv_cache_manager, parent.request_id, child.request_id, n)
        child.num_computed_tokens = n
        if getattr(child, "prefill_stats", None) is not None:  # reported as its cached prompt tokens
            child.prefill_stats.set(num_prompt_tokens=child.num_prompt_tokens, num_local_cached_tokens=n,
                                    num_external_cached_tokens=0)
        if has_slot:
            self._run_forked(child)
        else:
            self._pending_forks[child.request_id] = child
        self.ttc_counters["forks"] += 1
        self.ttc_counters["tokens_shared"] += n
        self.ttc_counters["tokens_copied"] += share.copied_tokens
        return share

    # ----------------------------------------------------------------------------------------
    # Scheduler overrides
    # ----------------------------------------------------------------------------------------

    def add_request(self, request: Request) -> None:
        if request.request_id in self.requests:  # a duplicate id: vLLM's own handling
            super().add_request(request)
            return
        params = _beam_params(request)
        if params is None:
            if not self.held_branches.on_add(request):  # not adopted as an in-place fork
                super().add_request(request)
            return
        sp = request.sampling_params.clone()
        terminal = set(sp.stop_token_ids or ())
        eos_ids = (sp.eos_token_id,) if sp.eos_token_id is not None else ()
        terminal.update(eos_ids)
        max_tokens = min(sp.max_tokens or 16, self.max_model_len - request.num_prompt_tokens - 1)
        # the lanes decode greedily with the top 2*width raw logprobs and never stop on their
        # own: stopping is the search's (EOS / stop tokens / max_tokens / early stopping)
        sp.temperature, sp.top_p, sp.top_k, sp.min_p, sp.seed = 0.0, 1.0, 0, 0.0, None
        sp.logprobs = 2 * params.width
        sp.ignore_eos, sp.stop_token_ids, sp.min_tokens = True, [], 0
        sp._eos_token_id, sp._all_stop_token_ids = None, set()
        sp.max_tokens = max_tokens + 1
        sp.extra_args = None  # the lanes carry no ttc section: no decoding hooks, no control
        request.sampling_params = sp
        request.max_tokens = sp.max_tokens
        beam = TokenBeam(params, max(max_tokens, 1), terminal.__contains__, self._stop_text(sp.stop))
        block = max(1, int(getattr(self, "block_size", 0) or self.vllm_config.cache_config.block_size))
        search = _Search(root=request, beam=beam, lanes=[request], prompt_len=request.num_prompt_tokens,
                         eos_ids=eos_ids,
                         worst_blocks=params.width * -(-(request.num_prompt_tokens + sp.max_tokens) // block))
        self._held.append(search)

    def _stop_text(self, stops: Any) -> Any:
        """Stop strings end a beam once its generated text (tokenizer-decoded, special tokens
        skipped) contains one; the frontend then trims the answer's text as for any request."""
        stops = [stops] if isinstance(stops, str) else list(stops or ())
        if not stops:
            return None
        from vllm.tokenizers import cached_tokenizer_from_config

        tokenizer = cached_tokenizer_from_config(self.vllm_config.model_config)

        def stop_text(tokens: tuple[int, ...]) -> str | None:
            text = tokenizer.decode(list(tokens), skip_special_tokens=True)
            return next((s for s in stops if s in text), None)

        return stop_text

    def get_num_unfinished_requests(self) -> int:
        return super().get_num_unfinished_requests() + len(self._held) + len(self._pending_forks)

    def schedule(self, *args: Any, **kwargs: Any) -> SchedulerOutput:
        # Beam lanes advance in lockstep: a lane that proposed waits, holding its blocks, for its
        # siblings. A preempted lane would need blocks its parked siblings (and other searches')
        # hold, and no search could finish: the engine would stall. So lanes must never be
        # preempted: searches are admitted only while their worst-case KV fits beside the others'
        # (_admit_held), lanes come first in the running queue (vLLM preempts from its end), and
        # held step branches give their blocks back before a lane would lack one.
        self.held_branches.before_schedule(reserve=len(self._lane_search))
        self._admit_held(self.max_num_running_reqs)
        if self._lane_search:
            self.running.sort(key=lambda r: r.request_id not in self._lane_search)  # stable
        # parked lanes and the slots a search has not forked into yet are taken: vLLM's own
        # admission of new requests must leave them free
        unused = sum(s.beam.width - len(s.lanes) for s in self._searches.values())
        with reserved_slots(self, len(self._parked) + unused):
            while self._pending_forks and len(self.running) < self.max_num_running_reqs:
                # forked children already hold their KV: they run before vLLM's waiting queue
                self._run_forked(self._pending_forks.pop(next(iter(self._pending_forks))))
            out = super().schedule(*args, **kwargs)
        for rid, n in out.num_scheduled_tokens.items():
            search = self._lane_search.get(rid)
            if search is not None:
                search.tokens_computed += n
        if self._fresh:
            self._announce_fresh(out)
        return out

    def update_from_output(self, scheduler_output: SchedulerOutput, model_runner_output: Any) -> dict[int, EngineCoreOutputs]:
        touched = self._collect_proposals(scheduler_output, model_runner_output)
        outputs = super().update_from_output(scheduler_output, model_runner_output)
        if self._lane_search or touched:
            hidden = set(self._lane_search) | {s.root.request_id for s in self._searches.values()}
            for eco in outputs.values():
                for o in eco.outputs:
                    search = self._searches.get(o.request_id)
                    if search is not None and o.prefill_stats is not None:
                        search.prefill_stats = o.prefill_stats  # the root's prompt accounting
                eco.outputs = [o for o in eco.outputs if o.request_id not in hidden]
                if eco.finished_requests:
                    eco.finished_requests = {r for r in eco.finished_requests if r not in hidden}
        for search in touched:
            if all(lane.request_id in search.proposals for lane in search.lanes):
                self._advance(search, outputs)
            else:  # lockstep: lanes that proposed wait for their siblings
                for lane in search.lanes:
                    if lane.request_id in search.proposals and lane in self.running:
                        self.running.remove(lane)
                        self._parked[lane.request_id] = lane
        return outputs

    def _admit_held(self, cap: int) -> None:
        if not self._held:
            return
        plain = sum(1 for r in self.running if r.request_id not in self._lane_search)
        committed = plain + sum(s.beam.width for s in self._searches.values())
        blocks = sum(s.worst_blocks for s in self._searches.values())
        pool = self.kv_cache_manager.block_pool.num_gpu_blocks
        while self._held and committed + self._held[0].beam.width <= cap and (
                not self._searches or blocks + self._held[0].worst_blocks <= pool):
            search = self._held.pop(0)
            committed += search.beam.width
            blocks += search.worst_blocks
            self._searches[search.root.request_id] = search
            self._lane_search[search.root.request_id] = search
            search.started = time.monotonic()
            super().add_request(search.root)

    def finish_requests(self, request_ids: Any, finished_status: RequestStatus) -> list[Request]:
        # aborting a beam request aborts every lane of its search
        ids = (request_ids,) if isinstance(request_ids, str) else request_ids
        if ids is not None and self._held:
            ids = set(ids)
            self._held = [s for s in self._held if s.root.request_id not in ids]
        if ids is not None and self._searches:
            ids = set(ids)
            for rid in list(ids):
                search = self._searches.pop(rid, None)
                if search is not None:
                    for lane in search.lanes:
                        self._unpark(lane)
                        self._lane_search.pop(lane.request_id, None)
                        ids.add(lane.request_id)
                    self._lane_search.pop(rid, None)
                    if not search.root_live:  # the root holds no blocks; only the id is left
                        search.root.status = RequestStatus.RUNNING
        if ids is None:
            self.held_branches.release(list(self.held_branches.held))
        elif self.held_branches.held or self.held_branches.hold_keys:
            ids = set(ids)
            ids -= self.held_branches.release(ids)  # keys of held step requests, not request ids
        for rid in list(self._pending_forks) if ids is None else set(ids) & set(self._pending_forks):
            del self._pending_forks[rid]  # still WAITING: vLLM frees it as a waiting request
        return super().finish_requests(ids, finished_status)

    def _free_blocks(self, request: Request) -> None:
        # a held step request keeps its blocks for its branch's children (.held_branches)
        if self.held_branches.hold_keys and self.held_branches.keep(request):
            del self.requests[request.request_id]
            return
        super()._free_blocks(request)

    # ----------------------------------------------------------------------------------------
    # Beam search steps
    # ----------------------------------------------------------------------------------------

    def _collect_proposals(self, so: SchedulerOutput, mro: Any) -> list[_Search]:
        if not self._lane_search or mro.logprobs is None:
            return []
        lp = mro.logprobs
        touched: dict[str, _Search] = {}
        for rid in so.num_scheduled_tokens:
            search = self._lane_search.get(rid)
            idx = mro.req_id_to_index.get(rid)
            if search is None or idx is None or not mro.sampled_token_ids[idx]:
                continue  # not a lane, or a prefill chunk that sampled nothing
            row = lp.cu_num_generated_tokens[idx] if lp.cu_num_generated_tokens is not None else idx
            ids, lps = lp.logprob_token_ids[row], lp.logprobs[row]
            k = search.beam.num_candidates
            search.proposals[rid] = (int(ids[0]), [(int(t), float(v)) for t, v in zip(ids[1:k + 1], lps[1:k + 1])])
            touched[search.root.request_id] = search
        return list(touched.values())

    def _advance(self, search: _Search, outputs: dict[int, EngineCoreOutputs]) -> None:
        choices = search.beam.step([search.proposals[lane.request_id][1] for lane in search.lanes])
        search.steps += 1
        picks: dict[int, list[tuple[int, int]]] = {}
        for i, c in enumerate(choices):
            picks.setdefault(c.parent, []).append((i, c.token))
        new_lanes: list[Request | None] = [None] * len(choices)
        kept_lanes = {p for p, lane in enumerate(search.lanes)
                      if search.proposals[lane.request_id][0] in {tok for _, tok in picks.get(p, [])}}
        for p, lane in enumerate(search.lanes):
            if p not in kept_lanes:  # pruned: its slot goes to a fork, its blocks stay until then
                self._unpark(lane)
                if lane in self.running:
                    self.running.remove(lane)
        for p, lane in enumerate(search.lanes):
            sampled = search.proposals[lane.request_id][0]
            mine = picks.get(p, [])
            keep = next((i for i, tok in mine if tok == sampled), None)
            if keep is not None:
                new_lanes[keep] = lane
            for i, tok in mine:
                if i != keep:
                    child = self._fork(lane, tok, search)
                    self._lane_search[child.request_id] = search
                    new_lanes[i] = child
        kept = {id(lane) for lane in new_lanes}
        for lane in search.lanes:  # after the forks: a pruned parent may still lend its blocks
            if id(lane) not in kept:
                self._retire(search, lane)
        search.lanes = [lane for lane in new_lanes if lane is not None]
        search.peak_lanes = max(search.peak_lanes, len(search.lanes))
        search.peak_blocks = max(search.peak_blocks, self._blocks_held(search.lanes))
        search.proposals.clear()
        for lane in search.lanes:
            self._unpark(lane)
        if search.beam.done:
            self._complete(search, outputs)

    def _retire(self, search: _Search, lane: Request) -> None:
        self._lane_search.pop(lane.request_id, None)
        self._unpark(lane)
        if lane is not search.root:
            self.release_request(lane.request_id)
            return
        # the root's id must live on until the search answers: drop its blocks and its place in
        # the batch (the model runner forgets it), keep the request
        search.root_live = False
        if lane in self.running:
            self.running.remove(lane)
        self.kv_cache_manager.free(lane)
        self.finished_req_ids.add(lane.request_id)
        lane.status = RequestStatus.PREEMPTED  # not RUNNING: never counted as schedulable

    def _blocks_held(self, lanes: list[Request]) -> int:
        """Distinct KV blocks the lanes hold (shared blocks count once)."""
        held: set[int] = set()
        for mgr in self.kv_cache_manager.coordinator.single_type_managers:
            for lane in lanes:
                held.update(id(b) for b in mgr.req_to_blocks.get(lane.request_id, ()))
        return len(held)

    def _unpark(self, lane: Request) -> None:
        if self._parked.pop(lane.request_id, None) is not None:
            self.running.append(lane)

    def _complete(self, search: _Search, outputs: dict[int, EngineCoreOutputs]) -> None:
        root = search.root
        self._searches.pop(root.request_id, None)
        self._lane_search.pop(root.request_id, None)
        hyps = search.beam.results()
        best = hyps[0]
        if best.finish_reason == "length":
            root.status = RequestStatus.FINISHED_LENGTH_CAPPED
        else:
            root.status = RequestStatus.FINISHED_STOPPED
            if best.stop_reason is not None and best.stop_reason not in search.eos_ids:
                root.stop_reason = best.stop_reason
        if root in self.running:
            self.running.remove(root)
        self._free_request(root)
        self.ttc_counters["searches"] += 1
        report = beam_report(
            beams=[h.to_json() for h in hyps],
            kv={
                "tokens_computed": search.tokens_computed,
                "tokens_shared_by_fork": search.tokens_shared,
                "blocks_shared_by_fork": search.blocks_shared,
                "tail_tokens_copied": search.tokens_copied,
                "forks": search.forks,
                "recompute_forks": search.recompute_forks,
                "prompt_tokens": search.prompt_len,
                "steps": search.steps,
                "peak_lanes": search.peak_lanes,
                "peak_blocks": search.peak_blocks,
                "engine_blocks_in_use": kv_fork.blocks_in_use(self.kv_cache_manager),
            },
            wall_time_s=time.monotonic() - search.started,
        )
        out = EngineCoreOutput(
            request_id=root.request_id,
            new_token_ids=list(best.token_ids),
            finish_reason=root.get_finished_reason(),
            stop_reason=root.stop_reason,
            kv_transfer_params={BEAM_REPORT_KEY: report},
            prefill_stats=search.prefill_stats,
        )
        eco = outputs.get(root.client_index)
        if eco is None:
            outputs[root.client_index] = eco = EngineCoreOutputs()
        eco.outputs.append(out)

    def _announce_fresh(self, out: SchedulerOutput) -> None:
        """Forked lanes scheduled for the first time reach the model runner as new requests (it
        has no state for them), with their whole block table and the tokens already computed."""
        cached = out.scheduled_cached_reqs
        move = [i for i, rid in enumerate(cached.req_ids) if rid in self._fresh]
        if not move:
            return
        moved = set(move)
        for i in move:
            rid = cached.req_ids[i]
            req = self.requests[rid]
            data = NewRequestData.from_request(
                req, self.kv_cache_manager.get_block_ids(rid),
                list(req.all_token_ids) if self.use_v2_model_runner else None,
            )
            data.num_computed_tokens = cached.num_computed_tokens[i]
            out.scheduled_new_reqs.append(data)
            self._fresh.discard(rid)
        keep = [i for i in range(len(cached.req_ids)) if i not in moved]
        kept_ids = [cached.req_ids[i] for i in keep]
        out.scheduled_cached_reqs = CachedRequestData(
            req_ids=kept_ids,
            resumed_req_ids={r for r in cached.resumed_req_ids if r in set(kept_ids)},
            new_token_ids=[cached.new_token_ids[i] for i in keep] if cached.new_token_ids else [],
            all_token_ids={r: t for r, t in cached.all_token_ids.items() if r in set(kept_ids)},
            new_block_ids=[cached.new_block_ids[i] for i in keep],
            num_computed_tokens=[cached.num_computed_tokens[i] for i in keep],
            num_output_tokens=[cached.num_output_tokens[i] for i in keep],
        )


def _beam_params(request: Request) -> BeamParams | None:
    sp = request.sampling_params
    raw = (sp.extra_args or {}).get("ttc") if sp is not None else None
    if isinstance(raw, str):
        raw = json.loads(raw)
    if not isinstance(raw, dict) or raw.get("beam") is None:
        return None
    return BeamParams.model_validate(raw["beam"])
