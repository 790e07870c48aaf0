"""Upstream-drift guards: one per seam in vllm_backend/patches/LEDGER.md. They fail when vLLM moves
or reshapes a symbol the plugin patches or relies on, before behaviour silently changes.

They check structure (symbols, ``inspect.signature`` parameters, dataclass / msgspec fields, enum
members, class hierarchy) and, where that is cheap, behaviour: upstream functions called with small
inputs, and vLLM's own input processor, output processor, persistent batch and scheduler built from
the suite's tiny model config (no weights, no engine). What only a running engine shows is named in a
comment together with the integration test of this suite that observes it. No guard reads upstream
source text: reformatting vLLM cannot break one, a change of what the backend relies on does.
"""

from __future__ import annotations

import inspect
import types

import pytest

from ttc_plugins.engines import SUPPORTED, is_supported


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _kwargs_for(fn, **candidates):
    """The candidates ``fn`` accepts (an argument a release dropped is left out)."""
    accepted = inspect.signature(fn).parameters
    return {k: v for k, v in candidates.items() if k in accepted}


@pytest.fixture(scope="module")
def vllm_config():
    """The engine config of the suite's tiny model: no weights loaded, no engine started. Prefix
    caching off, so no block hashing (``init_none_hash`` is process-global and random); creating
    the config seeds the global RNGs, whose state is put back for the tests that run after."""
    import random

    import numpy as np
    import torch
    from vllm.engine.arg_utils import EngineArgs

    from integration.common.tiny import tiny_model_dir

    rng = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        config = EngineArgs(model=str(tiny_model_dir()), dtype="float32", max_model_len=256, max_num_seqs=4,
                            max_num_batched_tokens=256, enable_chunked_prefill=False, enable_prefix_caching=False,
                            skip_tokenizer_init=True).create_engine_config()
    finally:
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
    return config


def _scheduler(vllm_config, num_blocks: int = 16, cls=None):
    """vLLM's own scheduler (or ``cls``, a subclass) over a KV cache of ``num_blocks`` blocks of one
    full-attention group."""
    import torch
    from vllm.v1.core.sched.scheduler import Scheduler

    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.structured_output import StructuredOutputManager

    block_size = vllm_config.cache_config.block_size
    vllm_config.cache_config.num_gpu_blocks = num_blocks
    spec = FullAttentionSpec(block_size=block_size, num_kv_heads=1, head_size=8, dtype=torch.float32)
    kv_cache_config = KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=[],
                                    kv_cache_groups=[KVCacheGroupSpec(["model.layers.0.self_attn.attn"], spec)])
    return (cls or Scheduler)(vllm_config=vllm_config, kv_cache_config=kv_cache_config,
                              structured_output_manager=StructuredOutputManager(vllm_config), block_size=block_size)


def _request(request_id: str, num_tokens: int, extra_args: dict | None = None):
    """An engine-core ``Request`` built with the keywords ``beam_scheduler._fork`` passes."""
    from vllm import SamplingParams
    from vllm.v1.request import Request

    return Request(request_id=request_id, prompt_token_ids=list(range(1, num_tokens + 1)),
                   sampling_params=SamplingParams(max_tokens=4, extra_args=extra_args), pooling_params=None, client_index=0,
                   arrival_time=0.0, lora_request=None, cache_salt=None, priority=0, block_hasher=None)


def _engine_core_request(vllm_config, request_id: str = "guard-0", cache_salt: str | None = None):
    """What vLLM's own (unpatched) ``InputProcessor.process_inputs`` makes of a token prompt."""
    from vllm import SamplingParams
    from vllm.v1.engine.input_processor import InputProcessor

    processor = InputProcessor.__new__(InputProcessor)
    inspect.unwrap(InputProcessor.__init__)(processor, vllm_config)  # vLLM's own, when patch 1 is applied
    prompt = {"prompt_token_ids": [1, 2, 3]}
    if cache_salt is not None:
        prompt["cache_salt"] = cache_salt
    params = SamplingParams(max_tokens=2)
    request = inspect.unwrap(InputProcessor.process_inputs)(processor, request_id, prompt, params,
                                                            supported_tasks=("generate",))
    return request, params


def test_vllm_version_in_supported_range():
    import vllm

    assert is_supported("vllm", vllm.__version__), (vllm.__version__, str(SUPPORTED["vllm"][1]))


def test_seam_input_processor(vllm_config):
    """Patch 1 (input_processor.py): the wrapper passes (request_id, prompt, params, ...) through,
    then edits the returned request's ``sampling_params`` and combines its ``cache_salt``."""
    from vllm.v1.engine import EngineCoreRequest
    from vllm.v1.engine.input_processor import InputProcessor

    original = inspect.unwrap(InputProcessor.process_inputs)
    assert _params(original)[:4] == ["self", "request_id", "prompt", "params"]
    assert _params(inspect.unwrap(InputProcessor.__init__))[:2] == ["self", "vllm_config"]
    assert "cache_salt" in EngineCoreRequest.__struct_fields__
    assert "sampling_params" in EngineCoreRequest.__struct_fields__
    request, params = _engine_core_request(vllm_config, cache_salt="client-salt")
    # the patch writes extra_args on the request's params: they must be a private copy, never the
    # caller's object (shared across prompts and requests)
    assert request.sampling_params is not params, "the request no longer owns a private copy of params"
    assert request.sampling_params.max_tokens == params.max_tokens
    # the client's salt reaches the request; the patch prepends it to the control's salt
    assert request.cache_salt == "client-salt"


def test_seam_cache_salt_feeds_block_hash():
    """Patch 1's isolation: a request's ``cache_salt`` is part of its first block's hash key, so
    requests with different controls never share prefix-cache blocks (behaviour:
    ``test_kv_cache.py::test_prefix_cache_isolation_eager``)."""
    from vllm.v1.core.kv_cache_utils import generate_block_hash_extra_keys

    def first_block_keys(salt):
        plain = types.SimpleNamespace(mm_features=None, lora_request=None, prompt_embeds=None, cache_salt=salt)
        keys, _ = generate_block_hash_extra_keys(plain, 0, 16, 0)
        return keys

    assert first_block_keys(None) is None
    assert first_block_keys("ttc:a") is not None, "cache_salt no longer feeds the prefix-cache block hash"
    assert first_block_keys("ttc:a") != first_block_keys("ttc:b")


def test_seam_output_processor(vllm_config):
    """Patch 2 (output_processor.py): ``from_new_request`` is wrapped; the opted-in state gets its
    own ``make_request_output``, which reads ``external_req_id``, ``prompt_token_ids``,
    ``detokenizer.output_token_ids`` and ``num_cached_tokens`` when the request finished."""
    from vllm.v1.engine import EngineCoreOutput, FinishReason
    from vllm.v1.engine.output_processor import OutputProcessor, RequestState
    from vllm.v1.metrics.stats import PrefillStats

    assert isinstance(inspect.getattr_static(RequestState, "from_new_request"), classmethod)  # .__func__
    new = inspect.unwrap(RequestState.from_new_request)
    assert _params(new)[:3] == ["cls", "tokenizer", "request"] or _params(new)[:2] == ["tokenizer", "request"]
    make = inspect.unwrap(RequestState.make_request_output)
    assert _params(make)[:4] == ["self", "new_token_ids", "pooling_output", "finish_reason"]
    # the reporting method is bound per opted-in state: vLLM must call it through the instance
    assert not hasattr(RequestState, "__slots__"), "RequestState gained __slots__: cannot bind per instance"

    request, _ = _engine_core_request(vllm_config, "guard-out")
    if "external_req_id" in type(request).__struct_fields__ and request.external_req_id is None:
        request.external_req_id = request.request_id  # what the engine's add_request sets
    processor = OutputProcessor(None, log_stats=False)
    processor.add_request(request, None)
    state = processor.request_states[request.request_id]
    seen = []

    def reporting(self, new_token_ids, pooling_output, finish_reason, *args, **kwargs):
        seen.append((finish_reason, self.external_req_id, list(self.prompt_token_ids),
                     list(self.detokenizer.output_token_ids), self.num_cached_tokens))
        return RequestState.make_request_output(self, new_token_ids, pooling_output, finish_reason, *args, **kwargs)

    state.make_request_output = types.MethodType(reporting, state)
    stats = PrefillStats()
    stats.set(num_prompt_tokens=3, num_local_cached_tokens=2, num_external_cached_tokens=0)
    processor.process_outputs([EngineCoreOutput(request_id=request.request_id, new_token_ids=[7],
                                                finish_reason=FinishReason.LENGTH, prefill_stats=stats)])
    assert seen, "OutputProcessor no longer calls make_request_output through the request's state"
    finish_reason, external_id, prompt, output, cached = seen[0]
    assert finish_reason is not None and external_id == request.external_req_id
    assert (prompt, output, cached) == ([1, 2, 3], [7], 2)


def test_seam_logits_processor_interface():
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, process_dict_updates
    from vllm.v1.sample.logits_processor.interface import MoveDirectionality

    assert _params(LogitsProcessor.__init__) == ["self", "vllm_config", "device", "is_pin_memory"]
    for name in ("apply", "is_argmax_invariant", "update_state", "validate_params"):
        assert hasattr(LogitsProcessor, name), name
    assert _params(process_dict_updates) == ["req_entries", "batch_update", "new_state"]
    assert {"removed", "added", "moved", "batch_size"} <= set(inspect.signature(BatchUpdate).parameters)
    assert {m.name for m in MoveDirectionality} >= {"SWAP", "UNIDIRECTIONAL"}
    # TTCLogitsProcessor._new_row(params, prompt_ids, output_ids) keyed by batch row
    params = SamplingParams(max_tokens=1)
    rows: dict = {}
    added = BatchUpdate(batch_size=2, removed=[], added=[(1, params, [5, 6], [])], moved=[])
    assert process_dict_updates(rows, added, lambda p, prompt, out: (p, prompt, out))
    assert rows == {1: (params, [5, 6], [])}
    moved = BatchUpdate(batch_size=2, removed=[], added=[], moved=[(1, 0, MoveDirectionality.UNIDIRECTIONAL)])
    process_dict_updates(rows, moved, lambda *a: None)
    assert list(rows) == [0]


def test_seam_forward_context(vllm_config):
    """``worker.current_state``: the forward context of a pass carries the engine's
    ``static_forward_context`` dict itself as ``no_compile_layers`` (identity keys the engine's
    ControlState), and attention metadata with ``query_start_loc``."""
    from vllm.forward_context import (
        ForwardContext,
        get_forward_context,
        is_forward_context_available,
        set_forward_context,
    )

    fields = ForwardContext.__dataclass_fields__
    assert "no_compile_layers" in fields and "attn_metadata" in fields
    with set_forward_context(None, vllm_config):
        assert is_forward_context_available()
        fc = get_forward_context()
        assert fc.no_compile_layers is vllm_config.compilation_config.static_forward_context
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionMetadata

    assert "query_start_loc" in CPUAttentionMetadata.__dataclass_fields__


def test_seam_batch_order_matches_token_order(vllm_config):
    """Logits processors see batch rows in the order the flattened forward lays tokens out.

    Checked here: the persistent batch hands every logits processor a ``BatchUpdate`` naming the
    row a request was added at. That the model runner refreshes the batch before each forward and
    lays tokens out in row order (``query_start_loc``) needs a running engine:
    ``test_mixed_batch.py::test_mixed_batch_eager_matches_hf_reference`` (steered and plain rows of
    one batch each match their own HF reference)."""
    import torch
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, LogitsProcessors
    from vllm.v1.worker.gpu_input_batch import CachedRequestState, InputBatch

    seen: list[BatchUpdate | None] = []

    class Recorder(LogitsProcessor):
        def __init__(self):
            pass

        def is_argmax_invariant(self):
            return True

        def update_state(self, batch_update):
            seen.append(batch_update)

        def apply(self, logits):
            return logits

    batch = InputBatch(**_kwargs_for(
        InputBatch.__init__, max_num_reqs=2, max_model_len=32, max_num_batched_tokens=32,
        device=torch.device("cpu"), pin_memory=False, vocab_size=32, block_sizes=[16], kernel_block_sizes=[16],
        max_num_blocks_per_req=[2], logitsprocs=LogitsProcessors([Recorder()])))
    params = SamplingParams(max_tokens=4)
    batch.add_request(CachedRequestState(req_id="a", prompt_token_ids=[1, 2], mm_features=[], sampling_params=params,
                                         generator=None, block_ids=([],), num_computed_tokens=0,
                                         output_token_ids=[]))
    batch.refresh_metadata()
    assert seen and seen[-1] is not None, "the persistent batch no longer calls update_state(batch_update)"
    assert [(index, p) for index, p, *_ in seen[-1].added] == [(0, params)]


@pytest.mark.parametrize("arch", ["LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"])
def test_seam_decoder_layers_return_hidden_and_residual(arch):
    """``model_wrap``: a decoder layer takes and returns the residual stream split in two,
    ``(hidden_states, residual)``, which the control op edits in place. That the pair's sum is the
    stream is seen with a running engine for Llama (the tested architecture):
    ``test_mixed_batch.py::test_mixed_batch_eager_matches_hf_reference``."""
    import importlib

    from ttc_plugins.vllm_backend.model_wrap import SUPPORTED_ARCHITECTURES

    module_name, cls_name = SUPPORTED_ARCHITECTURES[arch]
    module = importlib.import_module(module_name)
    layer_cls = next(v for k, v in vars(module).items() if k.endswith("DecoderLayer") and isinstance(v, type))
    forward = inspect.signature(layer_cls.forward)
    assert list(forward.parameters) == ["self", "positions", "hidden_states", "residual"], layer_cls
    returns = forward.return_annotation
    returns = returns if isinstance(returns, str) else str(returns)
    assert returns.replace(" ", "") == "tuple[torch.Tensor,torch.Tensor]", \
        f"{layer_cls.__name__}.forward changed its return"
    init = inspect.signature(getattr(module, cls_name).__init__)
    assert "vllm_config" in init.parameters and "prefix" in init.parameters


def test_seam_model_registry_overwrite():
    """``register_model(arch, "module:Class")`` replaces a built-in architecture, lazily (vLLM imports
    ``model_wrap.TTC<arch>`` by name when it builds the model)."""
    from vllm import ModelRegistry

    arch = "LlamaForCausalLM"
    before = ModelRegistry.models[arch]  # vLLM's own entry, or ours when register() already ran
    try:
        ModelRegistry.register_model(arch, "ttc_guard_module:GuardModel")
        entry = ModelRegistry.models[arch]
        assert (entry.module_name, entry.class_name) == ("ttc_guard_module", "GuardModel"), \
            "register_model no longer allows replacing a built-in architecture"
    finally:
        ModelRegistry.models[arch] = before


def test_seam_general_plugins_run_register_uncaught(monkeypatch):
    """vLLM must call general-plugin functions outside its try/except (a refused version stops the engine)."""
    from vllm import plugins

    def refuse():
        raise RuntimeError("refused by the guard")

    assert plugins.DEFAULT_PLUGINS_GROUP == "vllm.general_plugins"  # our entry point's group
    monkeypatch.setattr(plugins, "plugins_loaded", False)
    monkeypatch.setattr(plugins, "load_plugins_by_group",
                        lambda group: {"ttc": refuse} if group == plugins.DEFAULT_PLUGINS_GROUP else {})
    with pytest.raises(RuntimeError, match="refused by the guard"):
        plugins.load_general_plugins()


# --- TTC scheduler (beam_scheduler.py) and branch fork (kv_fork.py) ---------------------------


def test_seam_scheduler_cls_subclass(vllm_config):
    from vllm.v1.core.sched.scheduler import Scheduler

    for name in ("schedule", "update_from_output", "add_request", "finish_requests",
                 "get_num_unfinished_requests", "_free_request", "_enqueue_waiting_request"):
        assert callable(getattr(Scheduler, name, None)), name
    assert _params(inspect.unwrap(Scheduler.update_from_output))[:3] == ["self", "scheduler_output",
                                                                          "model_runner_output"]
    assert _params(Scheduler.finish_requests)[:3] == ["self", "request_ids", "finished_status"]
    scheduler = _scheduler(vllm_config)
    for attr in ("running", "requests", "finished_req_ids", "max_num_running_reqs", "use_v2_model_runner",
                 "kv_cache_manager", "max_model_len"):
        assert hasattr(scheduler, attr), attr
    assert scheduler.max_num_running_reqs == vllm_config.scheduler_config.max_num_seqs
    assert scheduler.max_model_len == vllm_config.model_config.max_model_len
    # TTCScheduler.schedule reserves slots (beam_scheduler.reserved_slots lowers vLLM's caps) for
    # the parent call while lanes are parked: vLLM's admission into RUNNING must stop there
    from ttc_plugins.vllm_backend.beam_scheduler import reserved_slots

    for i in range(3):
        scheduler.add_request(_request(f"r{i}", 8))
    with reserved_slots(scheduler, scheduler.max_num_running_reqs - 2):
        try:
            out = scheduler.schedule()
        except AssertionError:  # vLLM's own end-of-step check: len(running) <= max_num_running_reqs
            out = None
    assert len(scheduler.running) == 2, (f"admission into RUNNING no longer stops at the reserved cap: "
                                         f"{len(scheduler.running)} running with 2 slots left")
    assert len(out.scheduled_new_reqs) == 2
    assert scheduler.max_num_running_reqs == vllm_config.scheduler_config.max_num_seqs  # restored


def test_ttc_scheduler_with_a_beam_and_plain_requests_at_capacity_keeps_vllms_invariant(vllm_config):
    """Regression (vLLM 0.31+): a width-3 beam and 3 plain requests on 4 slots. The beam's reserved
    slots must keep vLLM's admission below its own end-of-step assert (len(running) <=
    max_num_running_reqs), which used to fire and kill the engine core."""
    from ttc_plugins.vllm_backend.beam_scheduler import TTCScheduler

    scheduler = _scheduler(vllm_config, num_blocks=32, cls=TTCScheduler)
    scheduler.add_request(_request("beam", 4, {"ttc": {"beam": {"width": 3}}}))
    for i in range(3):
        scheduler.add_request(_request(f"plain{i}", 4))
    scheduler.schedule()  # raised AssertionError before the fix
    assert len(scheduler.running) <= vllm_config.scheduler_config.max_num_seqs
    assert scheduler.max_num_running_reqs == vllm_config.scheduler_config.max_num_seqs


def test_seam_model_runner_takes_new_requests_with_computed_tokens_and_block_copies(vllm_config):
    """``_announce_fresh`` hands forked lanes to the model runner as new requests carrying their
    whole block table and ``num_computed_tokens``, and ``kv_fork`` queues the tail-block copy.
    That the model runner (``GPUModelRunner._update_states``) starts a new request at its
    ``num_computed_tokens`` and copies the blocks before the forward needs a running engine:
    ``test_token_beam.py::test_forks_share_the_parents_blocks_and_recompute_no_prefix`` and
    ``test_token_beam.py::test_beams_and_scores_equal_the_hf_reference[long-*]``."""
    from vllm.v1.core.sched.output import CachedRequestData, NewRequestData, SchedulerOutput

    fields = set(NewRequestData.__dataclass_fields__)
    assert {"req_id", "prompt_token_ids", "block_ids", "num_computed_tokens", "sampling_params"} <= fields
    assert set(CachedRequestData.__dataclass_fields__) == {
        "req_ids", "resumed_req_ids", "new_token_ids", "all_token_ids", "new_block_ids",
        "num_computed_tokens", "num_output_tokens"}
    assert "kv_cache_block_copies" in SchedulerOutput.__dataclass_fields__
    # NewRequestData.from_request(request, block_ids, prefill_token_ids), the rest defaulted
    from_request = inspect.signature(NewRequestData.from_request).parameters
    assert list(from_request)[:3] == ["request", "block_ids", "prefill_token_ids"]
    assert all(p.default is not p.empty for p in list(from_request.values())[3:])
    scheduler = _scheduler(vllm_config)
    scheduler.add_request(_request("r0", 8))
    scheduler.schedule()
    request = scheduler.requests["r0"]
    data = NewRequestData.from_request(request, scheduler.kv_cache_manager.get_block_ids("r0"), None)
    assert data.req_id == "r0" and data.block_ids == scheduler.kv_cache_manager.get_block_ids("r0")


def test_seam_kv_fork_block_tables(vllm_config):
    """``kv_fork.share_prefix`` on vLLM's own KV cache manager: the child holds the parent's full
    blocks, the tail copy is queued through ``_apply_cow`` and the next ``schedule()`` ships it in
    ``SchedulerOutput.kv_cache_block_copies``."""
    from vllm.v1.core.block_pool import BlockPool
    from vllm.v1.core.single_type_kv_cache_manager import FullAttentionManager, SingleTypeKVCacheManager

    from ttc_plugins.vllm_backend import kv_fork

    for name in ("touch", "get_new_blocks", "get_num_free_blocks", "free_blocks"):
        assert callable(getattr(BlockPool, name, None)), name
    assert _params(SingleTypeKVCacheManager._apply_cow) == ["self", "request_id", "block_idx", "source_block",
                                                            "cow_block"]
    assert issubclass(FullAttentionManager, SingleTypeKVCacheManager)
    scheduler = _scheduler(vllm_config)
    block_size = vllm_config.cache_config.block_size
    scheduler.add_request(_request("parent", block_size + 3))  # one full block and a 3-token tail
    scheduler.schedule()
    manager = scheduler.kv_cache_manager
    (group,) = manager.coordinator.single_type_managers
    assert kv_fork.forkable(manager) and isinstance(group, FullAttentionManager)
    parent = list(group.req_to_blocks["parent"])
    assert len(parent) == 2 and isinstance(group.num_cached_block, dict) and group.block_pool is manager.block_pool
    free = kv_fork.free_blocks(manager)
    share = kv_fork.share_prefix(manager, "parent", "child", block_size + 3)
    child = group.req_to_blocks["child"]
    assert share == kv_fork.ForkShare(shared_blocks=1, copied_tokens=3)
    assert child[0] is parent[0] and child[1] is not parent[1] and kv_fork.free_blocks(manager) == free - 1
    assert group._pending_cow_copies, "_apply_cow no longer queues the copy"
    copies = scheduler.schedule().kv_cache_block_copies
    assert [(c.src_block_id, c.dst_block_id) for c in copies] == [(parent[1].block_id, child[1].block_id)]


def test_seam_held_branches(vllm_config):
    """``TTCScheduler._free_blocks`` keeps a held request's blocks: every path that frees a finished
    request's blocks must go through ``_free_blocks``, which alone drops it from ``requests``.
    ``search_ops`` (in process and in the server) releases a held key through ``LLMEngine.engine_core`` /
    ``AsyncLLM.engine_core`` (set when the engine starts): ``test_step_fork.py::
    test_children_fork_from_the_held_step_and_compute_only_their_new_token`` and
    ``test_search_server.py::test_searches_leave_no_kv_held_in_the_server``."""
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.engine.core_client import EngineCoreClient
    from vllm.v1.metrics.stats import PrefillStats
    from vllm.v1.request import RequestStatus

    assert _params(Scheduler._free_blocks) == ["self", "request"]
    assert _params(Scheduler._free_request_blocks) == ["self", "request"]
    assert _params(PrefillStats.set) == ["self", "num_prompt_tokens", "num_local_cached_tokens",
                                         "num_external_cached_tokens"]
    for name in ("abort_requests", "abort_requests_async"):
        assert callable(getattr(EngineCoreClient, name, None)), name
    assert isinstance(_request("x", 4).prefill_stats, PrefillStats)
    scheduler = _scheduler(vllm_config)
    for rid in ("kept", "freed"):
        scheduler.add_request(_request(rid, 8))
    scheduler.schedule()
    calls = []
    scheduler._free_blocks = calls.append  # an override that keeps the blocks (and the entry)
    scheduler.finish_requests(["kept"], RequestStatus.FINISHED_ABORTED)
    assert [r.request_id for r in calls] == ["kept"] and "kept" in scheduler.requests
    del scheduler._free_blocks
    scheduler.finish_requests(["freed"], RequestStatus.FINISHED_ABORTED)
    assert "freed" not in scheduler.requests
    held = scheduler.requests["kept"]
    Scheduler._free_request_blocks(scheduler, held)  # a held key's release
    assert not scheduler.kv_cache_manager.coordinator.single_type_managers[0].req_to_blocks.get("kept")


def test_seam_dp_balancer():
    """A served search under in-server data parallelism (``search_ops.AsyncVLLMEngineOps``): the
    balancer's cores, its abort of one core, and ``generate``'s ``data_parallel_rank``."""
    from vllm.v1.engine.async_llm import AsyncLLM
    from vllm.v1.engine.core_client import DPLBAsyncMPClient

    assert "data_parallel_rank" in _params(AsyncLLM.generate)
    assert _params(DPLBAsyncMPClient._abort_requests) == ["self", "request_ids", "engine"]
    source = inspect.getsource(DPLBAsyncMPClient)
    for attr in ("self.core_engines", "self.reqs_in_flight"):
        assert attr in source, attr


def test_seam_logprobs_and_engine_core_output():
    from vllm.v1.engine import EngineCoreOutput
    from vllm.v1.outputs import LogprobsLists, ModelRunnerOutput

    assert LogprobsLists._fields[:4] == ("logprob_token_ids", "logprobs", "sampled_token_ranks",
                                         "cu_num_generated_tokens")
    assert {"req_id_to_index", "sampled_token_ids", "logprobs"} <= set(ModelRunnerOutput.__dataclass_fields__)
    assert {"kv_transfer_params", "prefill_stats", "new_token_ids", "finish_reason", "stop_reason"} <= set(
        EngineCoreOutput.__struct_fields__)


def test_session_runs_the_release_it_names():
    """nox's vllm-<version> session installs that release (its lock), and it is a supported one."""
    import os

    import vllm

    from ttc_plugins.engines import releases

    expected = os.environ.get("TTC_ENGINE_VERSION")
    if expected:
        assert vllm.__version__.split("+")[0] == expected, (vllm.__version__, expected)
    assert vllm.__version__.split("+")[0] in [r.version for r in releases("vllm").releases if r.status != "dropped"]


def test_seam_compat_symbols():
    """``vllm_backend.compat``: each moved symbol resolves on this release with the shape the
    search server uses (see LEDGER.md, "symbols that moved")."""
    from http import HTTPStatus

    from ttc_plugins.vllm_backend import compat

    usage = compat.usage_info_class()(prompt_tokens=3, completion_tokens=2, total_tokens=5)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 2, 5)
    from vllm.exceptions import VLLMValidationError

    error = compat.create_error_response()(VLLMValidationError("ttc.x: bad", parameter="ttc.x"))
    assert error.error.code == HTTPStatus.BAD_REQUEST and error.error.param == "ttc.x", error


def test_seam_scheduler_errors(vllm_config):
    """Patches 4 and 5 (scheduler_errors.py, worker_failures.py), on vLLM's own scheduler: a
    failure recorded by the worker for one request rides on the step's output (through the
    executor's pickling) and ends that request with finish reason ``error`` in the next update
    (whether or not the forced EOS already stopped it); the other request of the batch runs on."""
    import pickle

    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.engine import FinishReason
    from vllm.v1.outputs import EMPTY_MODEL_RUNNER_OUTPUT, ModelRunnerOutput
    from vllm.v1.worker.gpu_worker import Worker

    from ttc_plugins.runtime.faults import HookFailure
    from ttc_plugins.runtime.wire import REQUEST_ID_KEY
    from ttc_plugins.vllm_backend import worker
    from ttc_plugins.vllm_backend.patches import scheduler_errors, worker_failures

    scheduler_errors.apply()
    worker_failures.apply()
    assert inspect.unwrap(Scheduler.update_from_output) is not Scheduler.update_from_output, "patch 4 not applied"
    assert inspect.unwrap(Worker.sample_tokens) is not Worker.sample_tokens, "patch 5 not applied"
    assert _params(inspect.unwrap(Worker.sample_tokens))[:2] == ["self", "grammar_output"]
    assert worker.attach_failures(EMPTY_MODEL_RUNNER_OUTPUT) is EMPTY_MODEL_RUNNER_OUTPUT  # nothing recorded
    assert isinstance(_scheduler(vllm_config).grammar_compile_error_reqs, set)
    for eos_stopped in (False, True):
        scheduler = _scheduler(vllm_config)
        ids = ["ok", "bad"]
        for rid in ids:
            scheduler.add_request(_request(rid, 4, {"ttc": {}, REQUEST_ID_KEY: f"front-{rid}"}))
        out = scheduler.schedule()
        eos = 0
        if eos_stopped:
            scheduler.requests["bad"].sampling_params.stop_token_ids = [eos]  # what the forced EOS does
            scheduler.requests["bad"].stop_token_ids = {eos}
        runner = ModelRunnerOutput(**_kwargs_for(
            ModelRunnerOutput.__init__, req_ids=ids, req_id_to_index={r: i for i, r in enumerate(ids)},
            sampled_token_ids=[[7], [eos]], logprobs=None, prompt_logprobs_dict={}, pooler_output=[]))
        worker.record_failure("front-bad", HookFailure("ttc_process_logits", "boom"))
        carried = pickle.loads(pickle.dumps(worker.attach_failures(runner)))  # the executor's queue pickles it
        assert not hasattr(runner, worker.FAILURES_ATTR), "the worker's own output object is not changed"
        outputs = scheduler.update_from_output(out, carried)
        finished = {o.request_id: o.finish_reason for eo in outputs.values() for o in eo.outputs
                    if o.finish_reason is not None}
        assert finished == {"bad": FinishReason.ERROR}, (eos_stopped, finished)
        (bad,) = [o for eo in outputs.values() for o in eo.outputs if o.request_id == "bad" and o.finish_reason]
        assert bad.stop_reason == "ttc-plugins: ttc_process_logits failed for this request: boom"
        assert "ok" in scheduler.requests and "bad" not in scheduler.requests
        assert worker.take_failures() == {}


def test_a_key_released_before_its_request_ends_is_never_held(vllm_config):
    """Regression: a search cancelled mid-round (its client left) aborts its running step request
    and releases the step's hold key at once; when the key's abort reached the scheduler first,
    the request was then held under it until the 60 s expiry (one block held per branch)."""
    from vllm.v1.request import RequestStatus

    from ttc_plugins.runtime.wire import BRANCH_KEY
    from ttc_plugins.vllm_backend.beam_scheduler import TTCScheduler

    for key_first in (True, False):
        scheduler = _scheduler(vllm_config, num_blocks=32, cls=TTCScheduler)
        free_before = scheduler.kv_cache_manager.block_pool.get_num_free_blocks()
        scheduler.add_request(_request("step", 20, {BRANCH_KEY: {"hold": "search-1/b0"}}))
        scheduler.schedule()
        order = [["search-1/b0"], ["step"]] if key_first else [["step"], ["search-1/b0"]]
        for ids in order:
            scheduler.finish_requests(ids, RequestStatus.FINISHED_ABORTED)
        assert not scheduler.held_branches.held and not scheduler.held_branches.hold_keys, key_first
        assert scheduler.kv_cache_manager.block_pool.get_num_free_blocks() == free_before, key_first


def test_beams_are_admitted_while_their_worst_case_kv_fits(vllm_config):
    """Regression: four width-4 beams on a pool that holds two stalled the engine (lanes of a
    lockstep search preempted while their siblings held the blocks). A search waits in its queue
    until its lanes' worst case fits beside the admitted searches' (behaviour under pressure:
    ``integration/conformance/test_kv_pressure.py``)."""
    from ttc_plugins.vllm_backend.beam_scheduler import TTCScheduler

    block = vllm_config.cache_config.block_size
    scheduler = _scheduler(vllm_config, num_blocks=4 * 3, cls=TTCScheduler)  # one search's worst case
    for rid in ("plain-a",):
        scheduler.add_request(_request(rid, 4))
    for rid in ("beam-1", "beam-2"):
        req = _request(rid, 4, {"ttc": {"beam": {"width": 4}}})
        req.sampling_params.max_tokens = 3 * block - 6
        scheduler.add_request(req)
    scheduler.schedule()
    assert set(scheduler._searches) == {"beam-1"} and [s.root.request_id for s in scheduler._held] == ["beam-2"]
