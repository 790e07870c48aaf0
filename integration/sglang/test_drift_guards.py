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
