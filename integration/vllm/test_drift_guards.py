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
