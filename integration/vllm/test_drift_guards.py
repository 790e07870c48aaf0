"""Upstream-drift guards: one per seam in vllm_backend/patches/LEDGER.md. They fail when vLLM moves
or reshapes a symbol the plugin patches or relies on, before behaviour silently changes."""

from __future__ import annotations

import inspect

import pytest

from ttc_plugins.engines import SUPPORTED, is_supported


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_vllm_version_in_supported_range():
    import vllm

    assert is_supported("vllm", vllm.__version__), (vllm.__version__, str(SUPPORTED["vllm"][1]))


def test_seam_input_processor():
    from vllm.v1.engine import EngineCoreRequest
    from vllm.v1.engine.input_processor import InputProcessor

    original = inspect.unwrap(InputProcessor.process_inputs)
    assert _params(original)[:4] == ["self", "request_id", "prompt", "params"]
    assert _params(inspect.unwrap(InputProcessor.__init__))[:2] == ["self", "vllm_config"]
    assert "cache_salt" in EngineCoreRequest.__struct_fields__
    assert "sampling_params" in EngineCoreRequest.__struct_fields__
    src = inspect.getsource(original)
    assert "sampling_params = params.clone()" in src, "the request no longer owns a private copy of params"
    assert 'cache_salt=decoder_input.get("cache_salt")' in src


def test_seam_cache_salt_feeds_block_hash():
    from vllm.v1.core import kv_cache_utils

    src = inspect.getsource(kv_cache_utils.generate_block_hash_extra_keys)
    assert "request.cache_salt" in src, "cache_salt no longer feeds the prefix-cache block hash"


def test_seam_output_processor():
    from vllm.v1.engine.output_processor import RequestState

    new = inspect.unwrap(RequestState.from_new_request)
    assert _params(new)[:3] == ["cls", "tokenizer", "request"] or _params(new)[:2] == ["tokenizer", "request"]
    make = inspect.unwrap(RequestState.make_request_output)
    assert _params(make)[:4] == ["self", "new_token_ids", "pooling_output", "finish_reason"]
    src = inspect.getsource(RequestState)
    for attr in ("self.num_cached_tokens", "self.external_req_id", "self.prompt_token_ids", "self.detokenizer"):
        assert attr in src, attr
    # the reporting method is bound per opted-in state: vLLM must call it through the instance
    assert not hasattr(RequestState, "__slots__"), "RequestState gained __slots__: cannot bind per instance"
    from vllm.v1.engine import output_processor

    assert "req_state.make_request_output(" in inspect.getsource(output_processor.OutputProcessor)


def test_seam_logits_processor_interface():
    from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, process_dict_updates
    from vllm.v1.sample.logits_processor.interface import MoveDirectionality

    assert _params(LogitsProcessor.__init__) == ["self", "vllm_config", "device", "is_pin_memory"]
    for name in ("apply", "is_argmax_invariant", "update_state", "validate_params"):
        assert hasattr(LogitsProcessor, name), name
    assert _params(process_dict_updates) == ["req_entries", "batch_update", "new_state"]
    assert {"removed", "added", "moved", "batch_size"} <= set(inspect.signature(BatchUpdate).parameters)
    assert {m.name for m in MoveDirectionality} >= {"SWAP", "UNIDIRECTIONAL"}


def test_seam_forward_context():
    from vllm import forward_context
    from vllm.forward_context import ForwardContext

    fields = ForwardContext.__dataclass_fields__
    assert "no_compile_layers" in fields and "attn_metadata" in fields
    # the op finds its engine's state through this identity
    assert "no_compile_layers=vllm_config.compilation_config.static_forward_context" in inspect.getsource(
        forward_context
    )
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionMetadata

    assert "query_start_loc" in CPUAttentionMetadata.__dataclass_fields__


def test_seam_batch_order_matches_token_order():
    """Logits processors see batch rows in the order the flattened forward lays tokens out."""
    from vllm.v1.worker import gpu_input_batch, gpu_model_runner

    assert "logit_proc.update_state(batch_update)" in inspect.getsource(gpu_input_batch.InputBatch.refresh_metadata)
    src = inspect.getsource(gpu_model_runner.GPUModelRunner._update_states)
    assert "refresh_metadata()" in src


@pytest.mark.parametrize("arch", ["LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"])
def test_seam_decoder_layers_return_hidden_and_residual(arch):
    import importlib

    from ttc_plugins.vllm_backend.model_wrap import SUPPORTED_ARCHITECTURES

    module_name, cls_name = SUPPORTED_ARCHITECTURES[arch]
    module = importlib.import_module(module_name)
    layer_cls = next(v for k, v in vars(module).items() if k.endswith("DecoderLayer") and isinstance(v, type))
    src = inspect.getsource(layer_cls.forward)
    assert "return hidden_states, residual" in src, f"{layer_cls.__name__}.forward changed its return"
    init = inspect.signature(getattr(module, cls_name).__init__)
    assert "vllm_config" in init.parameters and "prefix" in init.parameters


def test_seam_model_registry_overwrite():
    from vllm import ModelRegistry

    src = inspect.getsource(type(ModelRegistry).register_model)
    assert "overwritten" in src, "register_model no longer allows replacing a built-in architecture"


def test_seam_general_plugins_run_register_uncaught():
    """vLLM must call general-plugin functions outside its try/except (a refused version stops the engine)."""
    from vllm import plugins

    src = inspect.getsource(plugins.load_general_plugins)
    assert "for func in plugins.values():\n        func()" in src


# --- TTC scheduler (beam_scheduler.py) and branch fork (kv_fork.py) ---------------------------


def test_seam_scheduler_cls_subclass():
    from vllm.v1.core.sched.scheduler import Scheduler

    for name in ("schedule", "update_from_output", "add_request", "finish_requests",
                 "get_num_unfinished_requests", "_free_request", "_enqueue_waiting_request"):
        assert callable(getattr(Scheduler, name, None)), name
    assert _params(inspect.unwrap(Scheduler.update_from_output))[:3] == ["self", "scheduler_output",
                                                                          "model_runner_output"]
    assert _params(Scheduler.finish_requests)[:3] == ["self", "request_ids", "finished_status"]
    src = inspect.getsource(Scheduler)
    for attr in ("self.running", "self.requests", "self.finished_req_ids", "self.max_num_running_reqs",
                 "self.use_v2_model_runner", "self.kv_cache_manager", "self.max_model_len"):
        assert attr in src, attr
    # the running-queue admission reads the cap we lower while lanes are parked / slots reserved
    assert "len(self.running) <= self.max_num_running_reqs" in inspect.getsource(Scheduler.schedule)


def test_seam_model_runner_takes_new_requests_with_computed_tokens_and_block_copies():
    from vllm.v1.core.sched.output import CachedRequestData, NewRequestData, SchedulerOutput
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    fields = set(NewRequestData.__dataclass_fields__)
    assert {"req_id", "prompt_token_ids", "block_ids", "num_computed_tokens", "sampling_params"} <= fields
    assert set(CachedRequestData.__dataclass_fields__) == {
        "req_ids", "resumed_req_ids", "new_token_ids", "all_token_ids", "new_block_ids",
        "num_computed_tokens", "num_output_tokens"}
    assert "kv_cache_block_copies" in SchedulerOutput.__dataclass_fields__
    src = inspect.getsource(GPUModelRunner._update_states)
    assert "num_computed_tokens=new_req_data.num_computed_tokens" in src
    assert "copy_kv_cache_blocks_inplace" in src, "block copies no longer run before the forward"


def test_seam_kv_fork_block_tables():
    from vllm.v1.core.block_pool import BlockPool
    from vllm.v1.core.kv_cache_manager import KVCacheManager
    from vllm.v1.core.single_type_kv_cache_manager import FullAttentionManager, SingleTypeKVCacheManager

    for name in ("touch", "get_new_blocks", "get_num_free_blocks", "free_blocks"):
        assert callable(getattr(BlockPool, name, None)), name
    assert _params(SingleTypeKVCacheManager._apply_cow) == ["self", "request_id", "block_idx", "source_block",
                                                            "cow_block"]
    src = inspect.getsource(SingleTypeKVCacheManager)
    for attr in ("self.req_to_blocks", "self.num_cached_block", "self._pending_cow_copies", "self.block_pool"):
        assert attr in src, attr
    assert "take_kv_cache_block_copies" in inspect.getsource(KVCacheManager)
    assert issubclass(FullAttentionManager, SingleTypeKVCacheManager)


def test_seam_held_branches():
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.engine.async_llm import AsyncLLM
    from vllm.v1.engine.core_client import EngineCoreClient
    from vllm.v1.engine.llm_engine import LLMEngine
    from vllm.v1.metrics.stats import PrefillStats
    from vllm.v1.request import Request

    assert _params(Scheduler._free_blocks) == ["self", "request"]
    assert _params(Scheduler._free_request_blocks) == ["self", "request"]
    # every path that frees a finished request's blocks goes through _free_blocks
    assert "self._free_blocks(request)" in inspect.getsource(Scheduler._free_request)
    assert "del self.requests[request.request_id]" in inspect.getsource(Scheduler._free_blocks)
    assert "self.prefill_stats" in inspect.getsource(Request.__init__)
    assert _params(PrefillStats.set) == ["self", "num_prompt_tokens", "num_local_cached_tokens",
                                         "num_external_cached_tokens"]
    for name in ("abort_requests", "abort_requests_async"):
        assert callable(getattr(EngineCoreClient, name, None)), name
    assert "self.engine_core" in inspect.getsource(LLMEngine.__init__)
    assert "self.engine_core" in inspect.getsource(AsyncLLM.__init__)


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
