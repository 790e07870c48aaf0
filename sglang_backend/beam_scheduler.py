"""Token-level beam search (``ttc.beam``) inside SGLang's scheduler, on SGLang's own fork primitive.

**Decision: SGLang's fork, our rules.** sglang 0.5.23 ships an in-engine beam search
(``sglang.srt.beam_search``, selected per request with the public sampling parameter
``beam_width``). It is two things:

- a *fork primitive* (``fork.py``, ``coordinator.py``, ``batch_tail.py``): a request with
  ``beam_width = k`` runs as its leader ``Req`` plus ``k - 1`` bare member rows of the
  req-to-token pool, spawned decode-ready after the leader's prefill with the prompt's KV slots
  *aliased* (no prefill, no copy); each step a row that continues another beam is remapped onto
  that beam's slots (``remap_kv_mapping``: again no copy, no recompute), slots nobody references
  any more go back to the allocator at once (``collect_orphan_slots``), and the group's decode
  region is freed once, deduplicated, when the group ends. The admission gate reserves the rows,
  the output path carries every sequence back (``meta_info["beam_results"]``);
- *selection and stopping rules* (``joint_select.py``, ``beam_group.py``) that are **not HF's**:
  there is no ``early_stopping`` (a group always runs to ``max_new_tokens`` unless fewer than
  ``k`` non-stop candidates remain), and a stop-token candidate finishes a hypothesis whenever
  fewer than ``k`` survivors rank above it, where HF (and :mod:`ttc_plugins.token_beam`) only
  finishes candidates ranked below ``k``. Driving ``beam_width`` alone would therefore not give
  HF's beams for ``early_stopping`` ``True`` / ``False`` (the default), and could differ for
  ``"never"`` as soon as stop tokens compete; ``length_penalty`` is not a request parameter
  either (fixed at 1.0), and width 1 is not a beam request at all.

So ``ttc.beam`` keeps SGLang's fork primitive and replaces only the decisions: a ``ttc.beam``
request is sent to the scheduler as a SGLang beam request (``beam_width = max(width, 2)``, set by
the frontend), and three seams (``patches/worker_beam_*``, ``LEDGER.md``) hand each step's
per-row top ``2 * rows`` raw log-probabilities to :class:`ttc_plugins.token_beam.TokenBeam` (the
same engine-free rules the vLLM backend uses), translate its answer (which live beam continues
with which token) into the ``(next_tokens, parent_idx)`` SGLang's remap and relay expect, end the
group when TokenBeam says so, and return TokenBeam's hypotheses as the group's results. Rows
beyond the live beams (width 1, or a step where fewer than ``width`` non-terminal candidates
exist) repeat the first live beam and are ignored. Requests without ``ttc.beam`` (SGLang's own
``beam_width`` requests included) take SGLang's code untouched.

KV: SGLang's beam search requires ``--page-size 1`` (the CPU default), so a "block" is one token
slot and there is no partial block to copy on a fork: a child shares every slot of its parent.
The report counts what the fork saved and what the engine holds, from SGLang's own allocator
and radix-cache counters; it reaches the frontend as request-level ``customized_info``
(``worker_beam_report``) and becomes ``meta_info["ttc"]["beam"]`` (:mod:`.frontend`).
"""

from __future__ import annotations

import time
from typing import Any

from ttc_plugins.runtime.wire import BEAM_REPORT_KEY
from ttc_plugins.token_beam import BeamParams, TokenBeam

STATE_ATTR = "_ttc_beam"


class _Search:
    """The ttc.beam state of one SGLang beam group."""

    def __init__(self, beam: TokenBeam, rows: int, prompt_len: int, engine_at_admission: dict[str, int]):
        self.beam = beam
        self.rows = rows  # SGLang rows of the group (leader + members): max(width, 2)
        self.prompt_len = prompt_len
        self.started = time.monotonic()
        self.engine_at_admission = engine_at_admission
        self.tokens_computed = 0
        self.tokens_shared = 0
        self.forks = 0
        self.steps = 0
        self.peak_lanes = 1
        self.peak_tokens = 0
        self.cached_prompt_tokens = 0
        self.finished_at_step: int | None = None


def engine_kv(coordinator: Any) -> dict[str, int]:
    """SGLang's own pool counters: token slots (total, free, held by the radix cache) and request
    rows (total, free). With no request running, ``free + radix_cached == total`` unless a slot
    leaked (SGLang's idle self-check asserts the same)."""
    alloc = coordinator.token_to_kv_pool_allocator
    tree = coordinator.tree_cache
    pool = coordinator.req_to_token_pool
    return {
        "tokens_total": int(alloc.size),
        "tokens_free": int(alloc.available_size()),
        "tokens_radix_cached": int(tree.evictable_size()) + int(tree.protected_size()),
        "req_rows_total": int(pool.size),
        "req_rows_free": int(pool.available_size()),
    }


def _group_class():
    from sglang.srt.beam_search.beam_group import BeamGroup, BeamGroupState, BeamResult

    class TTCBeamGroup(BeamGroup):
        """A SGLang beam group whose steps are decided by :class:`TokenBeam` (the instance's
        class is swapped at admission; nothing else in SGLang changes)."""

        def commit_pending(self, up_to_tick=None) -> bool:
            # the decisions were taken at select time: commit only advances the step count and
            # finishes the group on the step TokenBeam ended on (later, overshoot steps drop)
            if self.state == BeamGroupState.FINISHED:
                self._pending_steps.clear()
                return False
            while self._pending_steps:
                tick, done = self._pending_steps[0]
                if up_to_tick is not None and tick > up_to_tick:
                    break
                self._pending_steps.pop(0)
                self.num_committed += 1
                search: _Search = getattr(self, STATE_ATTR)
                search.peak_tokens = max(search.peak_tokens, self._tokens_held())
                if done:
                    self._pending_steps.clear()
                    self.state = BeamGroupState.FINISHED
                    return True
            return False

        def _tokens_held(self) -> int:
            # host-side, as SGLang's own extra_uncached_tokens: prompt + every row's decode
            # window, minus the slots already returned (shared slots count once)
            if self.all_rows is None:
                return self.prompt_len
            window = self.leader.kv.kv_allocated_len - self.prompt_len
            return self.prompt_len + self.beam_width * window - self.slots_freed

        def finalize(self):
            search: _Search = getattr(self, STATE_ATTR)
            hyps = search.beam.results()
            self.leader.customized_info = {BEAM_REPORT_KEY: [report(search, self)]}
            return [
                BeamResult(
                    tokens=list(h.token_ids),
                    cum_logprob=h.cumulative_logprob,
                    beam_score=h.score,
                    matched_token=h.stop_reason if h.finish_reason == "stop" and isinstance(h.stop_reason, int) else None,
                )
                for h in hyps
            ]

    return TTCBeamGroup


_TTC_GROUP = None


def group_class():
    global _TTC_GROUP
    if _TTC_GROUP is None:
        _TTC_GROUP = _group_class()
    return _TTC_GROUP


def attach(coordinator: Any, req: Any, user_params: Any, params: BeamParams) -> None:
    """After SGLang admitted ``req`` as a beam request: make its group a ttc.beam group.

    ``user_params`` are the request's sampling params before SGLang neutralized them."""
    group = req.beam_group
    terminal = set(int(t) for t in (user_params.stop_token_ids or ()))
    if not user_params.ignore_eos:
        # SGLang's own stop set (EOS of the model config and tokenizer), without its quirk of
        # dropping the request's stop_token_ids under ignore_eos
        terminal |= set(coordinator._collect_stop_token_ids(req, user_params))
    max_tokens = int(group.max_new_tokens)
    beam = TokenBeam(params, max(max_tokens, 1), terminal.__contains__)
    group.__class__ = group_class()
    group.num_return = params.width
    setattr(group, STATE_ATTR, _Search(beam, group.beam_width, int(group.prompt_len), engine_kv(coordinator)))


def is_ttc_group(group: Any) -> bool:
    return getattr(group, STATE_ATTR, None) is not None


def select(group: Any, top_logprobs: Any, top_tokens: Any, tick: int) -> tuple[Any, Any]:
    """One step of a ttc.beam group, in place of SGLang's ``joint_select``: the tokens every row
    decodes next and, unless the search just ended, the row each one continues (``parent_idx``,
    for SGLang's KV remap). Mirrors ``BeamCoordinator._select_group``'s contract."""
    import torch

    search: _Search = getattr(group, STATE_ATTR)
    rows = group.beam_width
    device = top_tokens.device
    prefill = group.num_generated == 0
    group.num_generated += 1
    if search.beam.done:  # an overshoot step after the end (overlap scheduling): nothing to decide
        group._pending_steps.append((tick, False))
        return torch.zeros(rows, dtype=torch.int64, device=device), None
    live = len(search.beam.tokens)
    lps, toks = top_logprobs[:live].tolist(), top_tokens[:live].tolist()
    proposals = [list(zip(map(int, t), map(float, v))) for t, v in zip(toks, lps)]
    leader = group.leader
    if prefill:
        # the prompt ran once, minus what SGLang's radix cache already held
        search.cached_prompt_tokens = min(int(leader.cached_tokens or 0), search.prompt_len)
        search.tokens_computed += search.prompt_len - search.cached_prompt_tokens
    else:
        search.tokens_computed += rows  # every row ran one token in this decode step
    choices = search.beam.step(proposals)
    search.steps += 1
    done = search.beam.done
    group._pending_steps.append((tick, done))
    if done:
        search.finished_at_step = search.steps
        tokens = [c.token for c in choices] or [int(toks[0][0])]
        tokens = (tokens + [tokens[0]] * rows)[:rows]
        return torch.tensor(tokens, dtype=torch.int64, device=device), None
    search.peak_lanes = max(search.peak_lanes, len(choices))
    if prefill:  # the members are spawned next, each aliasing the prompt's slots
        search.forks += len(choices) - 1
        search.tokens_shared += (len(choices) - 1) * search.prompt_len
    else:
        window = int(leader.kv.kv_committed_len) - search.prompt_len
        for i, c in enumerate(choices):
            if c.parent != i:  # row i now continues beam c.parent: it takes over its slots
                search.forks += 1
                search.tokens_shared += search.prompt_len + window
    pad = choices[0]
    padded = choices + [pad] * (rows - len(choices))
    next_tokens = torch.tensor([c.token for c in padded], dtype=torch.int64, device=device)
    parent_idx = torch.tensor([c.parent for c in padded], dtype=torch.int64, device=device)
    return next_tokens, parent_idx


def report(search: _Search, group: Any) -> dict[str, Any]:
    """The finished search's report, in the shape of the vLLM backend's (``beam_scheduler``)."""
    from ttc_plugins.runtime.report import beam_report

    return beam_report(
        beams=[h.to_json() for h in search.beam.results()],
        kv={
            "tokens_computed": search.tokens_computed,
            "tokens_shared_by_fork": search.tokens_shared,
            "blocks_shared_by_fork": search.tokens_shared,  # page size 1: a block is a token
            "tail_tokens_copied": 0,
            "forks": search.forks,
            "recompute_forks": 0,
            "prompt_tokens": search.prompt_len,
            "prompt_tokens_cached": search.cached_prompt_tokens,
            "steps": search.steps,
            "rows": search.rows,
            "peak_lanes": search.peak_lanes,
            "peak_blocks": search.peak_tokens,
            "block_size": 1,
            "engine_at_admission": search.engine_at_admission,
        },
        wall_time_s=time.monotonic() - search.started,
    )
