"""Run many searches on one engine, batching every round.

Each search is a strategy generator (see :mod:`ttc_plugins.search.base`). Every round the driver
collects the operation each live search is waiting on and issues, per kind, one engine call for
all of them: one ``extend`` with the branches of every search, one ``score`` per distinct scorer,
one ``embed`` per embedder (the engine's, or a registered embedder run here, in the process
driving the searches). Searches at different stages advance together.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import TTCParamError
from ..params import NamedParams, TTCParams, validate_args
from ..types import Branch, KVStats, RequestContext, RequestReport
from .base import EmbedOp, ExtendOp, ScoreOp, SearchState, SearchStrategy, Selection
from .engine import EngineOps
from .result import Candidate, SearchResult

__all__ = ["SearchPrompt", "arun_search", "resolve_search", "run_search"]

_request_ids = itertools.count()


@dataclass(frozen=True)
class SearchPrompt:
    """A prompt with an optional reference answer (read only by oracle scorers, ``Scorer.oracle``)
    and request id."""

    text: str
    reference: str | None = None
    request_id: str | None = None


def resolve_search(pm, raw: Mapping[str, Any] | NamedParams) -> tuple[type[SearchStrategy], Any, Any]:
    """Validate a ``ttc.search`` object: returns (strategy class, its params, scorer instance or
    None). Errors are :class:`TTCParamError` naming the field (``ttc.search.width``,
    ``ttc.search.scorer``, ``ttc.search.scorer_args.template``)."""
    if isinstance(raw, NamedParams):
        named = raw
    else:
        parsed = pm.parse_params({"search": dict(raw)})
        named = parsed.search
    strategy = pm.strategies.get(named.name)
    params = named.args
    strategy.check(params, pm)
    scorer_name = params.scorer if params.scorer is not None else strategy.default_scorer
    scorer = None
    if scorer_name is not None:
        if scorer_name not in pm.scorers:
            known = ", ".join(pm.scorers.names()) or "none"
            raise TTCParamError("ttc.search.scorer", f"unknown scorer {scorer_name!r}; registered: {known}")
        scorer_cls = pm.scorers.get(scorer_name)
        scorer_params = validate_args("ttc.search.scorer_args", scorer_cls.Params, params.scorer_args)
        scorer = scorer_cls(scorer_params)
    elif params.scorer_args:
        raise TTCParamError("ttc.search.scorer_args", "given but no scorer is selected")
    return strategy, params, scorer


def _path(branch: Branch | None) -> list[str]:
    return [st.text for st in branch.steps] if branch is not None else []


def run_search(
    engine_ops: EngineOps,
    prompts: Sequence[str | SearchPrompt],
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    pm=None,
) -> list[SearchResult]:
    """Search every prompt concurrently on ``engine_ops``; one :class:`SearchResult` per prompt.
    The synchronous form of :func:`arun_search`, run to completion by ``engine_ops.run``.

    :param params: the ``ttc.search`` object (``{"strategy": "beam", "width": 4, ...}``) for all
        prompts, or one such object per prompt (searches of different strategies share rounds).
    :param pm: the plugin manager (default: the process-wide one).
    :raises TTCParamError: on invalid parameters, before any engine call.
    """
    return engine_ops.run(arun_search(engine_ops, prompts, params, pm=pm))


async def arun_search(
    engine_ops: Any,
    prompts: Sequence[str | SearchPrompt],
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    pm=None,
) -> list[SearchResult]:
    """Run the searches, awaiting every engine call on the caller's loop (an OpenAI server's):
    the loop is free while the engine works, so concurrent searches of other clients interleave.

    Only this driver calls the engine: strategies yield operations (:mod:`.base`), and so do
    scorers that need the engine (:mod:`ttc_plugins.scoring.base`); each round's operations of
    every search become one batched call. A registered embedder is the search process's own model,
    not the engine: it runs in a worker thread so the loop stays free.
    """
    rounds = _rounds(engine_ops, prompts, params, pm)
    try:
        call = next(rounds)
        while True:
            call = rounds.send(await _engine_call(engine_ops, *call))
    except StopIteration as done:
        return done.value
    finally:
        # an engine call that raised, or a cancelled search (its client went away): the driver
        # releases every branch its searches still hold before the error goes on (see _rounds)
        rounds.close()


async def _engine_call(engine_ops: Any, kind: str, arg: Any) -> Any:
    """Make one batched call of :func:`_rounds`."""
    if kind == "extend":
        return await engine_ops.aextend(arg)
    if kind == "embed":
        return await engine_ops.aembed(arg)
    if kind == "local_embed":  # the search process's embedding model, off the loop
        embedder, texts = arg
        return await asyncio.to_thread(embedder, texts)
    if kind == "score":
        scorer, batch = arg
        return await score_batch(scorer, batch, engine_ops)
    raise ValueError(f"unknown engine call {kind!r}")


async def score_batch(scorer: Any, batch: Sequence[Any], engine_ops: Any) -> list[Any]:
    """``scorer.score(batch)``, making the engine calls a scorer that is a generator asks for."""
    out = scorer.score(list(batch))
    if not hasattr(out, "send"):
        return out
    try:
        op = next(out)
        while True:
            op = out.send(await scorer_engine_call(engine_ops, op))
    except StopIteration as done:
        return done.value


async def scorer_engine_call(engine_ops: Any, op: Any) -> Any:
    """The engine call behind one operation a scorer yielded."""
    from ..scoring.base import LogprobsOp, RewardOp, VerifyOp
    from ..scoring.prm import step_rewards

    if isinstance(op, VerifyOp):
        return await engine_ops.averify_prob(list(op.requests))
    if isinstance(op, LogprobsOp):
        return await engine_ops.ascore_logprobs(list(op.pairs))
    if isinstance(op, RewardOp):
        return await step_rewards(engine_ops, op.model, op.paths)
    raise TypeError(f"a scorer yielded {op!r}, not a scorer operation (VerifyOp, LogprobsOp, RewardOp)")


def _rounds(engine_ops, prompts, params, pm):
    """The driver: a generator that yields each batched engine call as ``("extend", requests)``,
    ``("score", (scorer, items))``, ``("embed", texts)`` or ``("local_embed", (embedder, texts))``
    and is sent its result (by :func:`arun_search`); it returns the results."""
    if pm is None:
        from ..manager import get_plugin_manager

        pm = get_plugin_manager()
    items = [p if isinstance(p, SearchPrompt) else SearchPrompt(text=p) for p in prompts]
    if isinstance(params, Mapping):
        per_prompt = [params] * len(items)
    else:
        per_prompt = list(params)
        if len(per_prompt) != len(items):
            raise TTCParamError("ttc.search", f"{len(per_prompt)} parameter objects for {len(items)} prompts")
    resolved = [resolve_search(pm, p) for p in per_prompt]
    for item, (_, _, scorer) in zip(items, resolved):
        if scorer is not None:
            scorer.check(engine_ops)
            if scorer.oracle and item.reference is None:
                raise TTCParamError("ttc.search.scorer", f"{scorer.name!r} is an oracle: it scores against the "
                                    "problem's reference answer, and this prompt has none; use a scorer that "
                                    "judges the text itself (e.g. arith_steps, self_eval, logprob, prm)")

    searches: list[dict[str, Any]] = []
    for item, raw, (strategy_cls, sp, scorer) in zip(items, per_prompt, resolved):
        rid = item.request_id or f"search-{next(_request_ids)}"
        prompt_ids = tuple(engine_ops.encode(item.text))
        named = NamedParams(name=strategy_cls.name, args=sp)
        ctx = RequestContext(request_id=rid, params=TTCParams(search=named), prompt_token_ids=prompt_ids,
                             engine=getattr(engine_ops, "name", ""))
        root = Branch(id=rid, parent_id=None, prompt_token_ids=prompt_ids)
        state = SearchState(pm=pm, ctx=ctx, params=sp, root=root, prompt=item.text, scorer=scorer)
        strategy = strategy_cls(sp)
        searches.append({"state": state, "strategy": strategy, "gen": strategy.run(state), "op": None,
                         "reference": item.reference,
                         "selection": None, "t0": time.perf_counter(), "wall": 0.0})

    def advance(s: dict[str, Any], value: Any) -> None:
        try:
            s["op"] = s["gen"].send(value)
        except StopIteration as stop:
            s["op"] = None
            s["selection"] = stop.value if stop.value is not None else Selection(chosen=None)
            s["wall"] = time.perf_counter() - s["t0"]

    try:
        for s in searches:
            advance(s, None)

        while True:
            pending = [s for s in searches if s["op"] is not None]
            if not pending:
                break
            results: dict[int, Any] = {}
            extends = [s for s in pending if isinstance(s["op"], ExtendOp)]
            if extends:
                reqs = [r for s in extends for r in s["op"].requests]
                out = yield ("extend", reqs)
                if len(out) != len(reqs):
                    raise RuntimeError(f"engine extend returned {len(out)} results for {len(reqs)} requests")
                _hand_out(results, extends, out, lambda op: op.requests)
            scores = [s for s in pending if isinstance(s["op"], ScoreOp)]
            groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for s in scores:
                groups[s["state"].scorer.batch_key()].append(s)
            for group in groups.values():
                from ..scoring.base import OracleItem, ScoreItem

                scorer = group[0]["state"].scorer
                if scorer.oracle:
                    batch = [OracleItem(prompt=s["state"].prompt, branch=b, reference=s["reference"])
                             for s in group for b in s["op"].branches]
                else:  # the reference answer never reaches a scorer that is not an oracle
                    batch = [ScoreItem(prompt=s["state"].prompt, branch=b) for s in group for b in s["op"].branches]
                out = yield ("score", (scorer, batch))
                _hand_out(results, group, out, lambda op: op.branches)
            by_embedder: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for s in pending:
                if isinstance(s["op"], EmbedOp):
                    by_embedder[id(s["op"].embedder)].append(s)
            for group in by_embedder.values():
                texts = [t for s in group for t in s["op"].texts]
                embedder = group[0]["op"].embedder
                out = yield ("embed", texts) if embedder is None else ("local_embed", (embedder, texts))
                _hand_out(results, group, out, lambda op: op.texts)
            for s in pending:
                if id(s) not in results:
                    raise TypeError(f"strategy {s['strategy'].name!r} yielded {s['op']!r}, not an engine operation")
                advance(s, results[id(s)])

    except BaseException:
        # a strategy, scorer or engine call raised, or the search was closed (cancelled): what
        # its branches hold in the engine (held step requests, forked KV) is released now, not
        # when the engine's own expiry comes around
        for s in searches:
            s["state"].release(s["state"].live())
        raise

    engine_kv = engine_ops.kv_stats()
    out_results: list[SearchResult] = []
    for s in searches:
        state: SearchState = s["state"]
        state.release(state.live())  # whatever the strategy still held
        state.counters.engine_peak_kv_blocks = engine_kv.peak_blocks
        result = _build_result(s["strategy"], state, s["selection"], s["wall"])
        report = RequestReport(
            request_id=state.ctx.request_id,
            finish_reason="search_done" if result.chosen_branch_id is not None else "no_result",
            output_token_ids=tuple(state.created[result.chosen_branch_id].token_ids) if result.chosen_branch_id in state.created else (),
            kv=KVStats(tokens_computed=state.counters.tokens_computed, tokens_reused=state.counters.tokens_reused,
                       peak_blocks=engine_kv.peak_blocks),
            extra={"search": result.to_json()},
        )
        pm.hook.ttc_request_finished(ctx=state.ctx, report=report)
        out_results.append(result)
    return out_results


def _hand_out(results: dict[int, Any], searches: list[dict[str, Any]], out: Sequence[Any], items) -> None:
    """Give each search its slice of a batched call's ``out``: as many results, in order, as
    ``items(op)`` of its pending op holds."""
    i = 0
    for s in searches:
        n = len(items(s["op"]))
        results[id(s)] = out[i : i + n]
        i += n


def _build_result(strategy: SearchStrategy, state: SearchState, sel: Selection, wall: float) -> SearchResult:
    chosen = sel.chosen
    answer = sel.answer if sel.answer is not None else (state.answer(chosen) if chosen is not None else None)
    candidates = [
        Candidate(branch_id=b.id, text=b.text, answer=state.answer(b),
                  score=state.path_score(b) if b.scores else None, finished=b.finished, finish_reason=b.finish_reason)
        for b in sel.candidates
    ]
    return SearchResult(
        request_id=state.ctx.request_id,
        strategy=strategy.name,
        answer=answer,
        text=chosen.text if chosen is not None else "",
        chosen_branch_id=chosen.id if chosen is not None else None,
        chosen_path=_path(chosen),
        scores=[sc.value for sc in chosen.scores] if chosen is not None else [],
        path_score=state.path_score(chosen) if chosen is not None and chosen.scores else None,
        candidates=candidates,
        counters=state.counters,
        wall_time_s=wall,
        info=dict(sel.info),
    )
