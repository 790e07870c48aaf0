"""Drift guards: one per SGLang seam the backend hooks (see sglang_backend/patches/LEDGER.md).

Engine-free (imports only): each asserts the exact shape the patch relies on, so an SGLang change
fails here with the seam's name instead of misbehaving in a served request.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

sglang = pytest.importorskip("sglang")

from ttc_plugins.sglang_backend import PROCESS_ROLES, patches  # noqa: E402

from ttc_plugins.engines import is_supported  # noqa: E402


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_pinned_sglang_version_is_supported():
    assert is_supported("sglang", sglang.__version__), sglang.__version__


@pytest.mark.parametrize("name", patches.PATCH_MODULES)
def test_every_patch_target_resolves_and_uses_no_replace(name):
    from sglang.srt.plugins.hook_registry import HookType

    mod = __import__(f"ttc_plugins.sglang_backend.patches.{name}", fromlist=["x"])
    target = patches.resolve(mod.TARGET)
    assert callable(target)
    assert mod.HOOK_TYPE in (HookType.BEFORE, HookType.AFTER, HookType.AROUND)
    ledger = (Path(patches.__file__).parent / "LEDGER.md").read_text()
    assert mod.__doc__ and f"`{name}`" in ledger, f"{name} is not in the patch ledger"



def test_hook_registry_api():
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    assert {"BEFORE", "AFTER", "AROUND", "REPLACE"} <= set(HookType.__members__)
    assert _params(HookRegistry.register)[:3] == ["target", "hook", "hook_type"]


def test_load_plugins_still_swallows_plugin_errors():
    """Why register() refuses with SystemExit: SGLang logs and ignores a plugin's exceptions.
    If this fails, upstream now propagates errors and the SystemExit can become a plain raise."""
    import sglang.srt.plugins as plugins

    src = inspect.getsource(plugins.load_plugins)
    assert "except Exception" in src and "func()" in src


def test_process_roles_are_the_callers_of_load_plugins():
    from sglang.srt.managers import data_parallel_controller, detokenizer_manager, scheduler

    modules = {"run_scheduler_process": scheduler, "run_detokenizer_process": detokenizer_manager,
               "run_data_parallel_controller_process": data_parallel_controller}
    for fn_name in PROCESS_ROLES:
        fn = getattr(modules[fn_name], fn_name)
        assert "load_plugins()" in inspect.getsource(fn), fn_name


def test_frontend_tokenized_seam():
    from sglang.srt.managers.io_struct import TokenizedGenerateReqInput
    from sglang.srt.managers.tokenizer_manager import TokenizerManager

    assert _params(TokenizerManager._create_tokenized_object)[:4] == ["self", "obj", "input_text", "input_ids"]
    assert "cache_salt" in TokenizedGenerateReqInput.__struct_fields__
    assert "sampling_params" in TokenizedGenerateReqInput.__struct_fields__
    # the radix cache keys nodes by salt: the isolation mechanism
    from sglang.srt.mem_cache.radix_cache import RadixKey

    assert "cache_salt" in RadixKey.__slots__


def test_frontend_refuse_pickles_seam():
    from sglang.srt.managers.tokenizer_manager import TokenizerManager

    assert _params(TokenizerManager._validate_one_request)[:2] == ["self", "obj"]
    src = inspect.getsource(TokenizerManager._tokenize_one_request)
    assert "_validate_one_request(" in src
    from sglang.srt.sampling import custom_logit_processor
    from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor

    assert "_cache_from_str" in inspect.getsource(CustomLogitProcessor.from_str)
    assert "dill.loads" in inspect.getsource(custom_logit_processor._cache_from_str), "the payload is still a pickle"


def test_frontend_report_finished_seam():
    from sglang.srt.managers.tokenizer_manager import TokenizerManager

    assert inspect.isasyncgenfunction(inspect.unwrap(TokenizerManager._stream_one_response))
    assert _params(TokenizerManager._stream_one_response)[:2] == ["self", "obj"]
    assert "_stream_one_response(obj=obj" in inspect.getsource(TokenizerManager._wait_one_response)
    src = inspect.getsource(TokenizerManager._handle_batch_output)
    assert '"cached_tokens"' in src and '"prompt_tokens"' in src


def test_worker_req_seams():
    from sglang.srt.managers.schedule_batch import BaseFinishReason, Req

    assert _params(Req.__init__)[:4] == ["self", "rid", "origin_input_text", "origin_input_ids"]
    assert _params(Req.update_finish_state) == ["self", "new_accepted_len"]
    for attr in ("finished", "set_finish_with_abort"):
        assert callable(getattr(Req, attr))
    src = inspect.getsource(Req.__init__)
    for field in ("self.output_ids", "self.sampling_params", "self.finished_reason"):
        assert field in src, field
    assert hasattr(BaseFinishReason, "to_json")


def test_worker_model_runner_seams():
    from sglang.srt.model_executor.model_runner import ModelRunner

    assert _params(ModelRunner.load_model) == ["self"]
    assert _params(ModelRunner.forward)[:2] == ["self", "forward_batch"]
    assert _params(ModelRunner.sample) == ["self", "logits_output", "forward_batch"]
    assert "self.sampler(" in inspect.getsource(ModelRunner.sample)


def test_worker_sampler_raw_logprobs_seam():
    from sglang.srt.layers.sampler import Sampler

    sig = inspect.signature(Sampler.forward)
    assert "logprob_logits" in sig.parameters and sig.parameters["logprob_logits"].kind is inspect.Parameter.KEYWORD_ONLY


def test_forward_batch_fields():
    import dataclasses

    from sglang.srt.model_executor.forward_batch_info import ForwardBatch

    names = {f.name for f in dataclasses.fields(ForwardBatch)}
    assert {"rids", "extend_seq_lens_cpu", "extend_seq_lens", "forward_mode", "return_logprob", "input_ids"} <= names


def test_residual_stream_boundary_accessors():
    from sglang.srt.layers.layer_boundary.residual import access, batch

    assert _params(batch.snapshot) == ["hidden_states", "forward_batch"]
    assert _params(batch.add_to_output) == ["hidden_states", "forward_batch", "extra"]
    assert _params(access.buffer) == ["hidden_states"]
    from sglang.srt.layers.layer_boundary.residual.stream import ResidualStream

    assert "output does not belong to this residual stream" in inspect.getsource(ResidualStream.check)


def test_llama_layers_get_forward_batch_as_third_positional_argument():
    from sglang.srt.models.llama import LlamaDecoderLayer, LlamaModel

    assert _params(LlamaDecoderLayer.forward)[:4] == ["self", "positions", "hidden_states", "forward_batch"]
    src = inspect.getsource(LlamaModel.forward)
    assert re.search(r"self\.layers\[i\]\(\s*positions,\s*hidden_states,\s*forward_batch", src)


def test_frontend_serve_search_seam():
    """What serving.py relies on: every OpenAI handler's entry, its request fields, the chat
    conversion, the error response with ``param``, the response types and the model registry."""
    from sglang.srt.entrypoints.openai import protocol
    from sglang.srt.entrypoints.openai.serving_base import OpenAIServingBase
    from sglang.srt.entrypoints.openai.serving_chat import OpenAIServingChat
    from sglang.srt.entrypoints.openai.serving_completions import OpenAIServingCompletion
    from sglang.srt.managers.io_struct import EmbeddingReqInput, GenerateReqInput
    from sglang.srt.models.registry import ModelRegistry
    from sglang.srt.models.qwen2_rm import Qwen2ForRewardModel

    assert inspect.iscoroutinefunction(inspect.unwrap(OpenAIServingBase.handle_request))
    assert _params(inspect.unwrap(OpenAIServingBase.handle_request)) == ["self", "request", "raw_request"]
    for cls in (OpenAIServingCompletion, OpenAIServingChat):  # they inherit the hooked entry
        assert "handle_request" not in cls.__dict__, cls
    assert _params(OpenAIServingChat._convert_to_internal_request)[:3] == ["self", "request", "raw_request"]
    assert "param" in _params(OpenAIServingBase.create_error_response)
    for req in (protocol.CompletionRequest, protocol.ChatCompletionRequest):
        assert {"custom_params", "stream", "n", "logprobs", "model"} <= set(req.model_fields), req
    assert {"text", "input_ids", "sampling_params", "return_logprob"} <= set(GenerateReqInput.__dataclass_fields__)
    assert "input_ids" in EmbeddingReqInput.__dataclass_fields__
    for name in ("CompletionResponse", "CompletionResponseChoice", "ChatCompletionResponse",
                 "ChatCompletionResponseChoice", "ChatMessage", "UsageInfo"):
        assert hasattr(protocol, name), name
    assert _params(ModelRegistry.register)[:2] == ["package_name", "overwrite"]  # bound: on the instance
    # models/qwen2_prm.py swaps the head's last Linear for one with num_labels outputs
    src = inspect.getsource(Qwen2ForRewardModel.__init__)
    assert "self.score = nn.Sequential(" in src and "nn.Linear(config.hidden_size, self.num_labels)" in src
    assert "PoolingType.LAST" in src


# ------------------------------------------------------------------------------------------------
# ttc.beam on SGLang's beam fork primitive (sglang_backend/token_beam.py)
# ------------------------------------------------------------------------------------------------


def test_worker_beam_admit_seam():
    """validate_and_init(req, recv_req) -> error or None, attaches ``req.beam_group`` and swaps the
    leader's sampling params (the hook reads the user's before the call)."""
    from sglang.srt.beam_search.coordinator import BeamCoordinator
    from sglang.srt.managers import scheduler

    assert _params(BeamCoordinator.validate_and_init) == ["self", "req", "recv_req"]
    src = inspect.getsource(BeamCoordinator.validate_and_init)
    assert "req.sampling_params = neutral" in src and "req.beam_group = group" in src
    assert "group.prompt_len = prompt_len" in src and "max_new_tokens=max_new_tokens" in src
    assert "self.beam_coordinator.validate_and_init(req, recv_req)" in inspect.getsource(scheduler)
    assert _params(BeamCoordinator._collect_stop_token_ids) == ["req", "user_params"]  # staticmethod
    # what token_beam.engine_kv reads
    for field in ("token_to_kv_pool_allocator", "tree_cache", "req_to_token_pool"):
        assert field in BeamCoordinator.__struct_fields__, field
    from sglang.srt.mem_cache.allocator.base import BaseTokenToKVPoolAllocator
    from sglang.srt.mem_cache.base_prefix_cache import BasePrefixCache

    assert callable(BaseTokenToKVPoolAllocator.available_size)
    assert callable(BasePrefixCache.evictable_size) and callable(BasePrefixCache.protected_size)


def test_worker_beam_select_seam():
    """_select_group(group, top_logprobs, top_tokens, tick) -> (next_tokens, parent_idx | None) is the
    one selection call at prefill and decode; a None parent_idx skips the KV remap."""
    from sglang.srt.beam_search.coordinator import BeamCoordinator

    assert _params(BeamCoordinator._select_group) == ["self", "group", "top_logprobs", "top_tokens", "tick"]
    prefill = inspect.getsource(BeamCoordinator.select_leader_prefill)
    assert "self._select_group(group, top_logprobs, top_tokens, tick)" in prefill
    assert "final = group.next_step_is_final()" in prefill and "self._spawn_member_rows(group, req)" in prefill
    decode = inspect.getsource(BeamCoordinator.select_and_relay_decode)
    assert "self._select_group(" in decode and "self._apply_survivors(group, next_tokens, parent_idx" in decode
    assert "group.num_candidates" in prefill and "group.num_candidates" in decode
    survivors = inspect.getsource(BeamCoordinator._apply_survivors)
    assert "if parent_idx is not None:" in survivors and "remap_kv_mapping(" in survivors
    assert "seq_len=group.leader.kv.kv_committed_len" in survivors
    # the group's lifecycle token_beam's TTCBeamGroup overrides / reads
    from sglang.srt.beam_search.beam_group import BeamGroup, BeamGroupState, BeamResult

    assert _params(BeamGroup.commit_pending) == ["self", "up_to_tick"]
    assert _params(BeamGroup.finalize) == ["self"]
    assert set(BeamResult.__struct_fields__) == {"tokens", "cum_logprob", "beam_score", "matched_token"}
    assert hasattr(BeamGroupState, "FINISHED") and hasattr(BeamGroupState, "DECODING")
    init = inspect.getsource(BeamGroup.__init__)
    for attr in ("self.beam_width", "self.num_return", "self.num_generated", "self.num_committed",
                 "self._pending_steps", "self.state", "self.all_rows", "self.slots_freed", "self.max_new_tokens"):
        assert attr in init, attr
    assert "group.commit_pending(" in inspect.getsource(BeamCoordinator.commit_decode)
    assert "group.commit_pending(" in inspect.getsource(BeamCoordinator.commit_prefill)
    finish = inspect.getsource(BeamCoordinator._finish_group)
    assert "group.finalize()" in finish and "top.matched_token" in finish
    from sglang.srt.beam_search.output import pack_beam_search_output

    assert "group.num_return" in inspect.getsource(pack_beam_search_output)
    from sglang.srt.managers.schedule_batch import Req

    src = inspect.getsource(Req.__init__)
    assert "self.cached_tokens" in src and "self.customized_info" in src


def test_sglang_beam_rules_still_differ_from_hf():
    """Why ttc.beam replaces SGLang's selection instead of mapping onto ``beam_width``: no
    early_stopping / length_penalty per request, and a stop candidate ranked at or below width can
    still finish. If this fails, upstream may have adopted HF's rules: re-check whether ttc.beam can
    become a thin translation onto ``beam_width`` (see sglang_backend/token_beam.py)."""
    from sglang.srt.beam_search.beam_group import BeamGroup
    from sglang.srt.beam_search.joint_select import joint_select
    from sglang.srt.sampling.sampling_params import SamplingParams

    assert "early_stopping" not in _params(BeamGroup.__init__)
    assert "length_penalty" not in SamplingParams.__struct_fields__
    assert "early_stopping" not in SamplingParams.__struct_fields__
    assert "examined = (non_stop_rank - non_stop.long()) < k" in inspect.getsource(joint_select)


def test_worker_beam_report_seam():
    """Request-level customized_info: sent once, whole, when the request finished."""
    from sglang.srt.managers.scheduler_components import output_streamer
    from sglang.srt.managers.scheduler_components.output_streamer import SchedulerOutputStreamer

    assert _params(SchedulerOutputStreamer.is_request_level_customized_info_key) == ["self", "key"]
    src = inspect.getsource(output_streamer)
    assert "is_request_level_customized_info_key=(\n                self.is_request_level_customized_info_key" in src
    assert "if req.customized_info is not None:" in src and "elif not req.finished():" in src
    from sglang.srt.managers.io_struct import BatchStrOutput, BatchTokenIDOutput

    assert "customized_info" in BatchTokenIDOutput.__struct_fields__
    assert "customized_info" in BatchStrOutput.__struct_fields__


def test_frontend_beam_fields():
    """What the frontend sets / reads for a ttc.beam request: SamplingParams.beam_width, the flattened
    beam output (best beam on top, every beam in meta_info["beam_results"] with its text), the meta_info
    copy that carries customized_info keys."""
    from sglang.srt.beam_search.output import _build_beam_search_out_dict, build_beam_search_out
    from sglang.srt.managers.tokenizer_manager import TokenizerManager
    from sglang.srt.sampling.sampling_params import SamplingParams

    assert {"beam_width", "n", "stop_token_ids", "ignore_eos", "stop_strs", "custom_params"} <= set(
        SamplingParams.__struct_fields__)
    assert 'converted["meta_info"]["beam_results"] = beam_results' in inspect.getsource(build_beam_search_out)
    assert "beam_meta_info = meta_info.copy()" in inspect.getsource(_build_beam_search_out_dict)
    src = inspect.getsource(TokenizerManager._stream_one_response)
    assert "out = build_beam_search_out(out)" in src


def test_session_runs_the_release_it_names():
    """nox's sglang-<version> session installs that release (its lock), and it is a supported one."""
    import os

    from ttc_plugins.engines import releases

    expected = os.environ.get("TTC_ENGINE_VERSION")
    if expected:
        assert sglang.__version__ == expected, (sglang.__version__, expected)
    assert sglang.__version__ in [r.version for r in releases("sglang").releases if r.status != "dropped"]
