"""The ttc hook specification: every hook a ttc plugin may implement.

Each spec is a typed, body-less function; its docstring is its whole contract (parameters, return
value, calling convention, and which process calls it). Hooks are grouped by lifecycle:

1. registration — plugins hand their components (search strategies, scorers, controls, decoders,
   embedders) to the host through a ``register`` callback;
2. decoding — logits before sampling, token acceptance, step boundaries, request end;
3. KV management — branch fork and release, cache isolation, accounting, eviction;
4. hidden-state control — per-request controls resolved in the frontend and applied to the
   residual stream in the worker.

One rule holds for every request feature (control, decoders, search, token beam): it is applied
as asked or refused before the request reaches the engine core (HTTP 400 naming the field) — never
accepted and silently ignored. The runtime (:mod:`ttc_plugins.runtime`) enforces it from the
serving engine's :class:`~ttc_plugins.types.EngineFacts`: a feature listed in ``facts.refused`` is
refused with the engine's reason, and each named component's ``check(args, facts)`` and
``ttc_resolve_control`` refuse what the facts cannot honour. Both engines run the same runtime, so
a hook sees the same calls, with the same rows, on vLLM and SGLang.

Processes: with vLLM the *frontend* is the process holding ``vllm.LLM`` or the API server, the
*worker* is the model-runner process; with SGLang the frontend is the engine/tokenizer process
and the worker is the scheduler process. The in-process reference engine runs both in one.

Write a plugin::

    from ttc_plugins import hookimpl

    @hookimpl
    def ttc_register_controls(register):
        register(MyControl)

and expose the module in ``pyproject.toml``::

    [project.entry-points.ttc_plugins]
    my_plugin = "my_package.ttc_plugin"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .types import Branch, ControlPlan, ControlSpec, KVStats, LogitsBatch, RequestContext, RequestReport, Step

hookspec = pluggy.HookspecMarker("ttc")

# ---------------------------------------------------------------------------------------------
# 1. Registration hooks (historic: a plugin registered late still receives every call)
# ---------------------------------------------------------------------------------------------


@hookspec(historic=True)
def ttc_register_search_strategies(register: Callable[[type], None]) -> None:
    """Register search strategies.

    :param register: call ``register(StrategyClass)`` once per strategy. The class has a unique
        ``name`` (the value a request puts in ``ttc.search.strategy``) and a pydantic ``Params``
        model validating its arguments.

    Historic: replayed to plugins registered after the first call. Runs in every process that
    builds a plugin manager (frontend and worker alike).
    """


@hookspec(historic=True)
def ttc_register_scorers(register: Callable[[type], None]) -> None:
    """Register scorers (verifiers, reward models, self-evaluation).

    :param register: call ``register(ScorerClass)``; the class has a unique ``name`` (the value of
        ``ttc.search.scorer``) and a pydantic ``Params`` model.

    A scorer gets the prompt and the branch (``ScoreItem``), never the reference answer; one that
    judges against the reference sets ``oracle = True`` and gets ``OracleItem`` s instead (its
    searches are the pass@k ceiling; a prompt without a reference that names it is refused,
    naming ``ttc.search.scorer``).

    Historic; runs in every process that builds a plugin manager.
    """


@hookspec(historic=True)
def ttc_register_controls(register: Callable[[type], None]) -> None:
    """Register hidden-state controls (steering vectors, TTC layers, ...).

    :param register: call ``register(ControlClass)``; the class has a unique ``name`` (the value
        of ``ttc.control.name``), a pydantic ``Params`` model, ``resolve(params, ctx) ->
        ControlSpec`` (frontend) and ``plan(spec, slot, plan)`` (worker), see
        :mod:`ttc_plugins.controls`. ``Params`` must bound what the control writes into the
        residual stream so that it stays finite (a NaN or infinity written into the KV cache
        outlives the request); an optional ``check(params, facts)`` is called as for decoders.

    Historic; runs in every process that builds a plugin manager.
    """


@hookspec(historic=True)
def ttc_register_decoders(register: Callable[[type], None]) -> None:
    """Register decoders: named, per-request logits processors.

    :param register: call ``register(DecoderClass)``; the class has a unique ``name`` (an entry of
        ``ttc.decoding``), a pydantic ``Params`` model (a :class:`ttc_plugins.request_model.RequestModel`
        for strict, finite, closed validation) and ``apply(logits, rows, params)``, see
        :mod:`ttc_plugins.decoding`. An optional classmethod ``check(params, facts)`` checks the
        validated arguments against the served model (:class:`ttc_plugins.types.EngineFacts`, e.g.
        token ids inside the vocabulary) in the frontend, raising ``TTCParamError`` with the field
        inside the decoder's arguments; ``apply`` runs in the engine and must never raise on a row
        its ``check`` accepted (an exception there fails the whole batch).

    Historic; runs in every process that builds a plugin manager.
    """


@hookspec(historic=True)
def ttc_register_embedders(register: Callable[[type], None]) -> None:
    """Register sentence embedders (texts -> L2-normalised vectors) for strategies that compare
    steps by meaning, such as ETS's semantic coverage.

    :param register: call ``register(EmbedderClass)``; the class has a unique ``name`` (the value
        of ``ttc.search.embedder``), a pydantic ``Params`` model, a ``cluster_distance`` (the cosine
        distance under which two steps count as one idea with this embedder) and
        ``__call__(texts) -> list[list[float]]``, see :mod:`ttc_plugins.embedding`. The default
        plugins register ``hashing`` and ``minilm``.

    Historic; runs in every process that builds a plugin manager. Embedders run in the process
    driving the search (not in the engine), one shared instance per process.
    """


# ---------------------------------------------------------------------------------------------
# 2. Decoding hooks
# ---------------------------------------------------------------------------------------------


@hookspec
def ttc_process_logits(batch: "LogitsBatch") -> None:
    """Edit logits before sampling, once per engine step (never once per token per request).

    :param batch: the step's logits and the rows whose request opted in (``batch.rows``). Edit
        ``batch.logits`` in place, only at those rows; rows of other requests must stay
        bit-identical. Return nothing.

    Called in the worker, inside the engine's sampling path, only when at least one row opted
    in. All implementations run, in plugin order. The default plugin relays each row to the
    decoders its request named in ``ttc.decoding``.

    An exception fails only the rows it came from (the backend finds them by rerunning the rows
    one at a time, their logits restored first): those requests end with an error (vLLM: finish
    reason ``error``, HTTP 500; SGLang: an abort with status 500 naming the error), the rest of
    the batch is untouched and the engine keeps serving (:mod:`ttc_plugins.runtime.faults`).
    """


@hookspec(firstresult=True)
def ttc_accept_token(ctx: "RequestContext", token_id: int, position: int) -> bool | None:
    """Accept or reject a token an opted-in request has just sampled.

    :param ctx: the request.
    :param token_id: the sampled token.
    :param position: its index among the request's output tokens (0 for the first).
    :return: ``False`` rejects the token: the backend ends the request there (the token stays in
        the output, so the reason is inspectable). SGLang finishes it with finish reason
        ``"rejected"``; vLLM, where a logits processor cannot finish a request, lets the row
        sample only EOS next, so the output ends with the rejected token and EOS (a request with
        ``ignore_eos`` is not stopped). ``True`` or ``None`` accepts. Stops at the first non-None
        result.

    Called in the worker before the next step's logits are processed, only for opted-in
    requests and only when some plugin implements it. An exception fails that request alone, as
    for ``ttc_process_logits``.
    """


@hookspec
def ttc_step_boundary(ctx: "RequestContext", branch: "Branch", step: "Step") -> None:
    """A branch completed a step (text up to the step delimiter, or its end).

    :param ctx: the search request the branch belongs to.
    :param branch: the branch, already extended by ``step``.
    :param step: what the branch added in this round and why it stopped.

    Called in the process driving the search, once per branch per round, after scoring inputs
    are known and before selection. All implementations run. Use it to log, collect traces or
    stop a search early through the strategy's own state.
    """


@hookspec
def ttc_request_finished(ctx: "RequestContext", report: "RequestReport") -> None:
    """An opted-in request (or search) finished.

    :param ctx: the request.
    :param report: finish reason, output tokens and KV accounting.

    Called in the frontend process (where results are returned) once per request. All
    implementations run; exceptions propagate to the caller of the request.
    """


# ---------------------------------------------------------------------------------------------
# 3. KV management hooks
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def ttc_cache_salt(ctx: "RequestContext") -> str | None:
    """The prefix-cache isolation key of a request.

    :param ctx: the request, with ``ctx.control`` already resolved.
    :return: a string; requests with different salts never share cached KV. ``None`` means "no
        isolation" (the engine's shared cache). The default plugin returns
        ``ctx.control.key`` for controlled requests and ``None`` otherwise, so plain requests
        keep sharing with each other. Stops at the first non-None result.

    Called in the frontend before the request is submitted (vLLM ``cache_salt``; SGLang radix
    namespace).
    """


@hookspec(firstresult=True)
def ttc_fork_branch(ctx: "RequestContext", parent: "Branch", k: int) -> "list[Branch] | None":
    """Fork ``k`` children from ``parent`` so that they share its prefix KV.

    :param ctx: the search request.
    :param parent: the branch to fork from (not finished).
    :param k: number of children, ``k >= 1``.
    :return: the ``k`` new branches. Stops at the first non-None result. The default plugin
        (``trylast``) forks by prefix: each child is a new branch whose prompt is the parent's
        tokens, which the engine's prefix cache then shares; each child also takes a reference
        to the parent's engine-held state (``Branch.handle``, a
        :class:`ttc_plugins.kv.held.HeldState` when the backend kept the parent's last step in
        the engine), so the backend forks the child in place at its next step (the parent's KV
        blocks shared, the partial last block copied) instead of recomputing that block.

    Called in the process driving the search.
    """


@hookspec
def ttc_release_branches(ctx: "RequestContext", branches: "Sequence[Branch]") -> None:
    """Branches were pruned or finished: release what they hold.

    :param ctx: the search request.
    :param branches: branches that will never be extended again.

    Called in the process driving the search, as soon as the strategy drops them. All
    implementations run. The default plugin drops each branch's reference to its engine-held
    state (``Branch.handle``); the backend frees the held request when the last reference goes.
    """


@hookspec
def ttc_kv_report(ctx: "RequestContext", stats: "KVStats") -> None:
    """KV accounting for a request or branch whose engine work just completed.

    :param ctx: the request.
    :param stats: tokens computed vs reused from cache, blocks held and the peak.

    Called in the frontend after each engine request finishes (one call per branch request
    during a search). All implementations run. An exception does not cost the request its
    answer: the request's ``ttc`` summary lists it under ``errors`` (``ttc_request_finished``
    likewise).
    """


@hookspec(firstresult=True)
def ttc_select_evictions(
    ctx: "RequestContext", branches: "Sequence[Branch]", kv_budget_tokens: int
) -> "list[str] | None":
    """Choose live branches to evict when a search holds more KV than its budget.

    :param ctx: the search request.
    :param branches: the live branches, with their scores and KV stats.
    :param kv_budget_tokens: the budget (``ttc.search.kv_budget_tokens``) the branches exceed.
    :return: ids of the branches to evict (they are released and never extended). Stops at the
        first non-None result; the default plugin evicts the lowest-scored branches until the
        budget holds, never all of them.

    Called in the process driving the search, before each extension round.
    """


# ---------------------------------------------------------------------------------------------
# 4. Hidden-state control hooks
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def ttc_resolve_control(ctx: "RequestContext") -> "ControlSpec | None":
    """Resolve a request's ``ttc.control`` parameters into a concrete :class:`ControlSpec`.

    :param ctx: the request, ``ctx.params`` validated (features the engine refuses already
        refused), ``ctx.facts`` the serving engine (:class:`~ttc_plugins.types.EngineFacts`:
        hidden size, layers, hosted TTC adapters, named vectors, refused features).
    :return: the spec (named vectors looked up, defaults filled) or ``None`` for no control.
        Stops at the first non-None result; the default plugin asks the registered control named
        in ``ttc.control.name``.
    :raises TTCParamError: naming the field, for a control the engine's facts cannot honour (a
        layer without an adapter, a vector of the wrong length, a layer past the model). The rule:
        a control is applied as asked or refused here (HTTP 400) — never accepted and ignored.

    Called in the frontend, once per request, before the cache salt is computed: the spec travels
    to the worker with the request, so per-request parameters are fixed before the forward pass.
    """


@hookspec
def ttc_prepare_controls(plan: "ControlPlan") -> None:
    """Describe, for one forward pass, what each control slot does at each layer.

    :param plan: the distinct control specs of the batch (``plan.specs``; slot i is
        ``plan.specs[i]``). Call ``plan.add_vector(layer, slot, vector, scale, mode=...,
        preserve_norm=...)`` for steering and ``plan.add_horizon(layer, slot, horizon, scale)``
        to route the slot's tokens through the layer's TTC adapter.

    Called in the worker before the forward pass, outside any compiled region, only when some
    scheduled request has a control. All implementations run. The default plugin delegates each
    slot to its registered control's ``plan`` method. The backend then updates the residual
    stream in place after each listed layer, token by token, with the request's own control.

    An exception fails the requests of the slots it came from (each slot is then planned alone),
    and so does a steering write that is not finite or leaves ``controls.steering.MAX_WRITE``, or
    an updated stream that is not finite: those tokens stay unsteered, nothing non-finite reaches
    the KV cache, and the other slots apply as planned.
    """
