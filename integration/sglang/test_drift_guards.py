"""Drift guards: one per SGLang seam the backend hooks (see sglang_backend/patches/LEDGER.md).

Engine-free: each checks the shape the patch relies on, so an SGLang change fails here with the
seam's name instead of misbehaving in a served request. They check structure (symbols,
``inspect.signature`` parameters, dataclass / msgspec fields, enum members, class hierarchy) and,
where that is cheap, behaviour: pure functions called with small inputs, and SGLang objects built
with stand-ins for what only a server has (``Req``, ``BeamGroup``, ``BeamCoordinator``,
``ResidualStream``, the reward model's head). What only a running engine shows is named in a comment
together with the integration test of this suite that observes it. No guard reads SGLang source
text: reformatting SGLang cannot break one, a change of what the backend relies on does.
"""

from __future__ import annotations

import inspect
import types
from pathlib import Path

import pytest

sglang = pytest.importorskip("sglang")

from ttc_plugins.sglang_backend import PROCESS_ROLES, patches  # noqa: E402

from ttc_plugins.engines import is_supported  # noqa: E402


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _coordinator(**stand_ins):
    """SGLang's ``BeamCoordinator`` with stand-ins for the scheduler's pools and configs."""
    from sglang.srt.beam_search.coordinator import BeamCoordinator

    fields = dict(model_config=None, spec_algorithm=None, dllm_enabled=False, max_req_len=64,
                  req_to_token_pool=None, token_to_kv_pool_allocator=None, tree_cache=None, future_map=None)
    return BeamCoordinator(**{**fields, **stand_ins})


def test_pinned_sglang_version_is_supported():
    assert is_supported("sglang", sglang.__version__), sglang.__version__


@pytest.mark.parametrize("name", patches.PATCH_MODULES)
def test_every_patch_target_resolves_and_uses_no_replace(name):
    from sglang.srt.plugins.hook_registry import HookType

    mod = __import__(f"ttc_plugins.sglang_backend.patches.{name}", fromlist=["x"])
    assert len(mod.TARGETS) == 1, "SGLang's HookRegistry hooks one target per patch module"
    target = patches.resolve(mod.TARGETS[0])
    assert callable(target)
    assert mod.HOOK_TYPE in (HookType.BEFORE, HookType.AFTER, HookType.AROUND)
    ledger = (Path(patches.__file__).parent / "LEDGER.md").read_text()
    assert mod.__doc__ and f"`{name}`" in ledger, f"{name} is not in the patch ledger"


def test_hook_registry_api():
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    assert {"BEFORE", "AFTER", "AROUND", "REPLACE"} <= set(HookType.__members__)
    assert _params(HookRegistry.register)[:3] == ["target", "hook", "hook_type"]


def test_load_plugins_still_swallows_plugin_errors(monkeypatch):
    """Why register() refuses with SystemExit: SGLang logs and ignores a plugin's exceptions.
    If this fails, upstream now propagates errors and the SystemExit can become a plain raise."""
    import sglang.srt.plugins as plugins

    def plugin_raising(exc):
        def load():
            def plugin():
                raise exc
            return plugin
        return types.SimpleNamespace(name="ttc", value="guard:plugin", dist=None, load=load)

    def run(exc):
        monkeypatch.setattr(plugins, "_plugins_loaded", False)
        monkeypatch.setattr(plugins, "entry_points", lambda group: (
            [plugin_raising(exc)] if group == plugins.GENERAL_PLUGINS_GROUP else []))
        plugins.load_plugins()

    assert plugins.GENERAL_PLUGINS_GROUP == "sglang.srt.plugins"  # our entry point's group
    monkeypatch.delenv("SGLANG_PLUGINS", raising=False)
    monkeypatch.delenv("SGLANG_PLATFORM", raising=False)
    run(RuntimeError("a plugin error"))  # logged and ignored: the engine would start without us
    with pytest.raises(SystemExit):  # not an Exception: what stops an engine we refuse
        run(SystemExit("refused"))


def test_process_roles_are_the_callers_of_load_plugins():
    """``process_role()`` names the process by the SGLang function on the stack that called
    ``load_plugins()``. The calls happen only in a starting server, so the guard checks the
    compiled function refers to ``load_plugins`` (immune to formatting); the scheduler and
    detokenizer roles are also seen running:
    ``test_registration.py::test_register_ran_in_main_scheduler_and_detokenizer``."""
    from sglang.srt.managers import data_parallel_controller, detokenizer_manager, scheduler

    modules = {"run_scheduler_process": scheduler, "run_detokenizer_process": detokenizer_manager,
               "run_data_parallel_controller_process": data_parallel_controller}
    codes = {name: inspect.unwrap(getattr(modules[name], name)).__code__ for name in PROCESS_ROLES}  # their frames
    assert [name for name, code in codes.items() if code.co_name != name or "load_plugins" not in code.co_names] == []


def test_frontend_tokenized_seam():
    from sglang.srt.managers.io_struct import TokenizedGenerateReqInput
    from sglang.srt.managers.tokenizer_manager import TokenizerManager

    assert _params(TokenizerManager._create_tokenized_object)[:4] == ["self", "obj", "input_text", "input_ids"]
    assert "cache_salt" in TokenizedGenerateReqInput.__struct_fields__
    assert "sampling_params" in TokenizedGenerateReqInput.__struct_fields__
    # the radix cache keys nodes by salt: the isolation mechanism (behaviour in a running engine:
    # test_radix_isolation.py)
    from sglang.srt.mem_cache.radix_cache import RadixKey

    assert "cache_salt" in RadixKey.__slots__
    tokens = [5, 6, 7]
    assert RadixKey(tokens, cache_salt="ttc:a").child_key() != RadixKey(tokens, cache_salt="ttc:b").child_key()
    assert RadixKey(tokens, cache_salt="ttc:a").child_key() != RadixKey(tokens).child_key()


def test_frontend_refuse_pickles_seam():
    """The BEFORE hook on ``_validate_one_request`` runs for every generate request before it
    leaves for the scheduler (seen in a running engine:
    ``test_security.py::test_pickle_payload_is_rejected_and_engine_serves_the_next_request``),
    and the payload it refuses is still a pickle whose callable SGLang calls."""
    import functools
    import json
    import pickle

    from sglang.srt.managers.tokenizer_manager import TokenizerManager
    from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor

    assert _params(TokenizerManager._validate_one_request)[:2] == ["self", "obj"]
    payload = json.dumps({"callable": pickle.dumps(functools.partial(sorted, [3, 1, 2])).hex()})
    assert CustomLogitProcessor.from_str(payload) == [1, 2, 3], "the payload is no longer an executed pickle"


def test_frontend_report_finished_seam():
    """AROUND ``_stream_one_response(obj, ...)``: an async generator of the request's output dicts.
    That ``_wait_one_response`` streams through it and that the last ``meta_info`` carries
    ``prompt_tokens`` / ``cached_tokens`` is seen in a running engine:
    ``test_mixed_batch.py::test_finished_requests_report_kv_and_control_key``."""
    from sglang.srt.managers.tokenizer_manager import TokenizerManager

    assert inspect.isasyncgenfunction(inspect.unwrap(TokenizerManager._stream_one_response))
    assert _params(TokenizerManager._stream_one_response)[:2] == ["self", "obj"]
    assert _params(TokenizerManager._wait_one_response)[:2] == ["self", "obj"]


def test_worker_req_seams():
    """AFTER ``Req.__init__`` (context from ``sampling_params.custom_params``, abort through
    ``set_finish_with_abort``) and AFTER ``Req.update_finish_state`` (reads ``output_ids``, sets
    ``finished_reason``). That ``update_finish_state`` runs once per accepted token:
    ``test_accept_token_relay.py::test_rejection_by_an_installed_plugin_ends_the_request_in_the_engine``."""
    from sglang.srt.managers.schedule_batch import BaseFinishReason, Req
    from sglang.srt.sampling.sampling_params import SamplingParams

    from ttc_plugins.sglang_backend.worker import _finish_rejected_cls

    assert _params(Req.__init__)[:4] == ["self", "rid", "origin_input_text", "origin_input_ids"]
    assert _params(Req.update_finish_state) == ["self", "new_accepted_len"]
    # an empty (valid) ttc section: where the plugin's hooks are installed in this process (the
    # suite's in-process engine), its AFTER hook parses it and must find nothing to refuse
    params = SamplingParams(max_new_tokens=4, custom_params={"ttc": {}})
    req = Req("guard", "", [1, 2, 3], params)
    # SGLang may keep a copy with keys of its own added (0.5.19-0.5.21: "__req__"); ours must be there
    assert req.sampling_params.custom_params["ttc"] == {} and req.sampling_params.max_new_tokens == 4
    assert list(req.origin_input_ids) == [1, 2, 3] and list(req.output_ids) == []
    assert req.finished_reason is None and not req.finished()
    rejected = _finish_rejected_cls()(7)
    assert isinstance(rejected, BaseFinishReason) and rejected.to_json()["matched"] == 7
    req.finished_reason = rejected
    assert req.finished()
    assert _params(Req.set_finish_with_abort)[:2] == ["self", "error_msg"]  # logs through the server's state


def test_worker_model_runner_seams():
    """AFTER ``load_model``, AROUND ``forward(forward_batch)``, BEFORE ``sample(logits_output,
    forward_batch)``. That ``sample`` samples through ``Sampler.forward`` (where the raw-logprobs
    hook sits) is seen in a running engine: decoder rows' logprobs equal the raw HF ones in
    ``test_mixed_batch.py::test_mixed_batch_matches_hf_reference_and_plain_rows_match_no_plugin``."""
    from sglang.srt.model_executor.model_runner import ModelRunner

    assert _params(ModelRunner.load_model) == ["self"]
    assert _params(ModelRunner.forward)[:2] == ["self", "forward_batch"]
    assert _params(ModelRunner.sample) == ["self", "logits_output", "forward_batch"]


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
    """The layer hook edits the output in place through the accessors: a layer output the stream
    did not record is refused ("output does not belong to this residual stream")."""
    import torch
    from sglang.srt.layers.layer_boundary.residual import access, batch

    assert _params(batch.snapshot) == ["hidden_states", "forward_batch"]
    assert _params(batch.add_to_output) == ["hidden_states", "forward_batch", "extra"]
    assert _params(access.buffer) == ["hidden_states"]
    from sglang.srt.layers.layer_boundary.residual.stream import Contribution, ResidualStream

    output = torch.zeros(2, 4)
    stream = ResidualStream()
    stream.pending = Contribution(output, None)
    stream.check(output)
    with pytest.raises(RuntimeError, match="does not belong to this residual stream"):
        stream.check(output.clone())


def test_llama_layers_get_forward_batch_as_third_positional_argument():
    """The layer hook reads ``args[2]`` or ``kwargs["forward_batch"]``: with ``forward_batch`` right
    after ``positions, hidden_states``, any call matching the signature puts it in one of the two. That
    ``LlamaModel`` calls its layers with the batch and the hooks run is seen in a running engine:
    ``test_registration.py::test_register_ran_in_main_scheduler_and_detokenizer`` (hooks on 4
    layers) and ``test_mixed_batch.py::test_mixed_batch_matches_hf_reference_and_plain_rows_match_no_plugin``."""
    from sglang.srt.models.llama import LlamaDecoderLayer

    assert _params(LlamaDecoderLayer.forward)[:4] == ["self", "positions", "hidden_states", "forward_batch"]


def test_frontend_serve_search_seam(monkeypatch):
    """What serving.py relies on: every OpenAI handler's entry, its request fields, the chat
    conversion, the error response with ``param``, the response types and the model registry."""
    from sglang.srt.entrypoints.openai import protocol
    from sglang.srt.entrypoints.openai.serving_base import OpenAIServingBase
    from sglang.srt.entrypoints.openai.serving_chat import OpenAIServingChat
    from sglang.srt.entrypoints.openai.serving_completions import OpenAIServingCompletion
    from sglang.srt.managers.io_struct import EmbeddingReqInput, GenerateReqInput
    from sglang.srt.models.registry import ModelRegistry

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
    # models/qwen2_prm.py swaps the head's last Linear (index 2) for one with num_labels outputs and
    # keeps LAST-token pooling; built here with a stand-in body (the Qwen2 body needs a server's
    # parallel state). The served PRM against HF: test_prm_sglang.py.
    import torch
    from sglang.srt.layers.pooler import PoolingType
    from sglang.srt.models import qwen2_rm

    from ttc_plugins.sglang_backend.models.qwen2_prm import Qwen2ForProcessRewardModel

    assert issubclass(Qwen2ForProcessRewardModel, qwen2_rm.Qwen2ForRewardModel)
    monkeypatch.setattr(qwen2_rm, "Qwen2Model", lambda *args, **kwargs: torch.nn.Identity())
    config = types.SimpleNamespace(hidden_size=8, num_labels=2, eos_token_id=0)
    head = Qwen2ForProcessRewardModel(config).score
    assert isinstance(head, torch.nn.Sequential) and isinstance(head[1], torch.nn.ReLU)
    assert [(m.in_features, m.out_features) for m in (head[0], head[2])] == [(8, 8), (8, 2)]
    assert qwen2_rm.Qwen2ForRewardModel(config).pooler.pooling_type == PoolingType.LAST


# ------------------------------------------------------------------------------------------------
# ttc.beam on SGLang's beam fork primitive (sglang_backend/beam_scheduler.py)
# ------------------------------------------------------------------------------------------------


def test_worker_beam_admit_seam():
    """validate_and_init(req, recv_req) -> error or None, attaches ``req.beam_group`` (with
    ``prompt_len`` and ``max_new_tokens``) and swaps the leader's sampling params (the hook reads
    the user's before the call). It reads the server's published configuration, so the admission
    is seen in a running engine: ``test_token_beam_sglang.py::test_beams_and_scores_equal_the_hf_reference``
    and ``::test_stop_tokens_length_penalty_and_early_stopping_follow_the_reference`` (the user's
    stop tokens, read before SGLang neutralizes the params)."""
    from sglang.srt.beam_search.coordinator import BeamCoordinator
    from sglang.srt.managers.schedule_batch import Req
    from sglang.srt.sampling.sampling_params import SamplingParams

    assert _params(BeamCoordinator.validate_and_init) == ["self", "req", "recv_req"]
    assert _params(BeamCoordinator._collect_stop_token_ids) == ["req", "user_params"]  # staticmethod
    assert isinstance(inspect.getattr_static(BeamCoordinator, "_collect_stop_token_ids"), staticmethod)
    req = Req("guard", "", [1, 2], SamplingParams(max_new_tokens=4))
    req.eos_token_ids = {9}
    user = SamplingParams(max_new_tokens=4, stop_token_ids=[5])
    assert set(BeamCoordinator._collect_stop_token_ids(req, user)) == {5, 9}
    # what beam_scheduler.engine_kv reads
    for field in ("token_to_kv_pool_allocator", "tree_cache", "req_to_token_pool"):
        assert field in BeamCoordinator.__struct_fields__, field
    from sglang.srt.mem_cache.allocator.base import BaseTokenToKVPoolAllocator
    from sglang.srt.mem_cache.base_prefix_cache import BasePrefixCache

    assert callable(BaseTokenToKVPoolAllocator.available_size)
    assert callable(BasePrefixCache.evictable_size) and callable(BasePrefixCache.protected_size)


def test_worker_beam_select_seam():
    """_select_group(group, top_logprobs, top_tokens, tick) -> (next_tokens, parent_idx | None) is the
    one selection call at prefill and decode; a None parent_idx skips the KV remap. That SGLang calls
    it at both (with the group's ``num_candidates`` = 2 x rows) and spawns the members after the
    prefill one is seen in a running engine: ``test_token_beam_sglang.py::
    test_beams_and_scores_equal_the_hf_reference`` and
    ``::test_forks_share_the_parents_slots_and_recompute_no_prefix``."""
    import torch
    from sglang.srt.beam_search.beam_group import BeamGroup, BeamGroupState, BeamResult
    from sglang.srt.beam_search.coordinator import BeamCoordinator

    assert _params(BeamCoordinator._select_group) == ["self", "group", "top_logprobs", "top_tokens", "tick"]
    coordinator = _coordinator()
    group = BeamGroup(beam_width=2, max_new_tokens=2)
    assert group.num_candidates == 4
    top_logprobs = torch.log_softmax(torch.tensor([[3.0, 2.0, 1.0, 0.0]]), dim=-1)
    next_tokens, parent_idx = BeamCoordinator._select_group(coordinator, group, top_logprobs,
                                                            torch.tensor([[10, 11, 12, 13]]), 0)
    assert next_tokens.tolist() == [10, 11] and parent_idx.tolist() == [0, 0]
    # the last step (max_new_tokens): every pick finishes, no row moves onto another's slots
    next_tokens, parent_idx = BeamCoordinator._select_group(coordinator, group, top_logprobs.expand(2, 4),
                                                            torch.tensor([[20, 21, 22, 23]] * 2), 1)
    assert parent_idx is None and len(next_tokens) == 2

    # _apply_survivors: parent_idx remaps the rows' KV window up to the leader's kv_committed_len
    # (what beam_scheduler.select counts as shared); None remaps nothing
    stashed = []
    req_to_token = torch.arange(16).view(2, 8)
    coordinator = _coordinator(req_to_token_pool=types.SimpleNamespace(req_to_token=req_to_token, device="cpu"),
                               future_map=types.SimpleNamespace(stash=lambda rows, payload: stashed.append(rows)))
    leader = types.SimpleNamespace(kv=types.SimpleNamespace(kv_committed_len=4), output_ids=[])
    group = BeamGroup(beam_width=2, max_new_tokens=8)
    group.leader, group.prompt_len, group.all_rows = leader, 2, torch.tensor([0, 1])
    BeamCoordinator._apply_survivors(coordinator, group, torch.tensor([1, 2]), None, 0)
    assert req_to_token[1].tolist() == list(range(8, 16)) and len(stashed) == 1
    BeamCoordinator._apply_survivors(coordinator, group, torch.tensor([1, 2]), torch.tensor([0, 0]), 1)
    assert req_to_token[1, 2:4].tolist() == [2, 3] and req_to_token[1, 4:].tolist() == [12, 13, 14, 15]

    # the group's lifecycle beam_scheduler's TTCBeamGroup overrides / reads
    assert _params(BeamGroup.commit_pending) == ["self", "up_to_tick"]
    assert _params(BeamGroup.finalize) == ["self"]
    assert set(BeamResult.__struct_fields__) == {"tokens", "cum_logprob", "beam_score", "matched_token"}
    assert {"FINISHED", "DECODING"} <= set(BeamGroupState.__members__)
    group = BeamGroup(beam_width=3, max_new_tokens=5, num_return=2)
    assert (group.beam_width, group.num_return, group.max_new_tokens) == (3, 2, 5)
    assert (group.num_generated, group.num_committed, group._pending_steps) == (0, 0, [])
    assert group.state == BeamGroupState.DECODING and group.all_rows is None and group.slots_freed == 0
    from sglang.srt.managers.schedule_batch import Req
    from sglang.srt.sampling.sampling_params import SamplingParams

    req = Req("guard", "", [1, 2], SamplingParams(max_new_tokens=4))
    assert req.cached_tokens == 0 and req.customized_info is None and req.beam_group is None


def test_worker_beam_commit_and_finish_seam():
    """``worker_beam_select``'s other half, TTCBeamGroup's ``commit_pending`` / ``finalize``: a
    committing tick (prefill or decode) hands its forward tick to ``group.commit_pending`` and, when
    that returns True, finishes the group from ``group.finalize()``: the top result's
    ``matched_token`` is the leader's finish reason, and the output carries ``num_return`` results."""
    from sglang.srt.beam_search.beam_group import BeamGroup, BeamResult
    from sglang.srt.beam_search.coordinator import BeamCoordinator
    from sglang.srt.beam_search.output import pack_beam_search_output

    ticks = []

    class Decided(BeamGroup):
        def commit_pending(self, up_to_tick=None):
            ticks.append(up_to_tick)
            return True

        def finalize(self):
            return [BeamResult(tokens=[5, 7], cum_logprob=-1.0, beam_score=-0.5, matched_token=7),
                    BeamResult(tokens=[5, 6], cum_logprob=-2.0, beam_score=-1.0, matched_token=None)]

    def leader_of(group):
        group.leader = types.SimpleNamespace(beam_group=group, to_finish=None, finished_reason=None)
        return group.leader

    coordinator = _coordinator(_num_live_groups=2)
    leader = leader_of(Decided(beam_width=2, max_new_tokens=4, num_return=1))
    assert BeamCoordinator.commit_decode(coordinator, types.SimpleNamespace(reqs=[leader], forward_iter=9)) == {
        id(leader.beam_group)}
    assert ticks == [9] and leader.finished_reason.to_json()["matched"] == 7
    assert [s.tokens for s in pack_beam_search_output(leader).sequences] == [[5, 7]]  # num_return
    leader = leader_of(Decided(beam_width=2, max_new_tokens=4))
    BeamCoordinator.commit_prefill(coordinator, leader, 3)
    assert ticks == [9, 3] and leader.beam_group.retired and coordinator._num_live_groups == 0


def test_sglang_beam_rules_still_differ_from_hf():
    """Why ttc.beam replaces SGLang's selection instead of mapping onto ``beam_width``: no
    early_stopping / length_penalty per request, and a stop candidate ranked at or below width can
    still finish. If this fails, upstream may have adopted HF's rules: re-check whether ttc.beam can
    become a thin translation onto ``beam_width`` (see sglang_backend/beam_scheduler.py)."""
    import torch
    from sglang.srt.beam_search.beam_group import BeamGroup
    from sglang.srt.beam_search.joint_select import joint_select
    from sglang.srt.sampling.sampling_params import SamplingParams

    assert "early_stopping" not in _params(BeamGroup.__init__)
    assert "length_penalty" not in SamplingParams.__struct_fields__
    assert "early_stopping" not in SamplingParams.__struct_fields__
    # width 2, one row: three stop tokens rank above the only other candidate. HF finishes only the
    # candidates ranked below the width (two); SGLang examines a candidate while fewer than `width`
    # survivors precede it, so the third stop token (rank 2) finishes too.
    top_logprobs = torch.log_softmax(torch.tensor([[4.0, 3.0, 2.0, 1.0]]), dim=-1)
    sel = joint_select(torch.zeros(1), top_logprobs, torch.tensor([[10, 11, 12, 13]]), torch.tensor([10, 11, 12]), 2)
    assert int(sel.num_finished) == 3 and int(sel.num_survivors) == 1


def test_worker_beam_report_seam():
    """Request-level customized_info: sent once, whole, when the request finished. The streamer hands
    its ``is_request_level_customized_info_key`` to the per-batch accumulator; that the report then
    reaches ``meta_info`` whole is seen in a running engine:
    ``test_token_beam_sglang.py::test_beams_and_scores_equal_the_hf_reference`` (every beam in
    ``meta_info["ttc"]["beam"]``)."""
    from sglang.srt.managers.io_struct import BatchStrOutput, BatchTokenIDOutput
    from sglang.srt.managers.scheduler_components import output_streamer
    from sglang.srt.managers.scheduler_components.output_streamer import SchedulerOutputStreamer

    assert _params(SchedulerOutputStreamer.is_request_level_customized_info_key) == ["self", "key"]
    assert "is_request_level_customized_info_key" in output_streamer._GenerationStreamAccumulator.__dataclass_fields__
    assert "customized_info" in BatchTokenIDOutput.__struct_fields__
    assert "customized_info" in BatchStrOutput.__struct_fields__


def test_frontend_beam_fields():
    """What the frontend sets / reads for a ttc.beam request: SamplingParams.beam_width, the flattened
    beam output (best beam on top, every beam in meta_info["beam_results"] with its text), the meta_info
    copy that carries customized_info keys. That ``_stream_one_response`` flattens a beam output is
    seen in a running engine: ``test_token_beam_sglang.py::test_beams_and_scores_equal_the_hf_reference``
    (each beam's text, the answer is the best beam's)."""
    from sglang.srt.beam_search.output import _build_beam_search_out_dict, build_beam_search_out
    from sglang.srt.beam_search.types import BeamSearchSequence
    from sglang.srt.managers.io_struct import BeamSearchOutput
    from sglang.srt.sampling.sampling_params import SamplingParams

    assert {"beam_width", "n", "stop_token_ids", "ignore_eos", "stop_strs", "custom_params"} <= set(
        SamplingParams.__struct_fields__)
    sequences = [BeamSearchSequence(tokens=[5, 7], cum_logprob=-1.0, beam_score=-0.5, text="best"),
                 BeamSearchSequence(tokens=[5, 6], cum_logprob=-2.0, beam_score=-1.0, text="second")]
    meta_info = {"prompt_tokens": 2, "ttc_beam": [{"beams": []}]}  # a request-level customized_info key
    out = _build_beam_search_out_dict(BeamSearchOutput(sequences=sequences), meta_info, None)
    out["beam_results"][0]["text"], out["beam_results"][1]["text"] = "best", "second"  # the detokenizer's
    flat = build_beam_search_out(out)
    assert flat["text"] == "best" and flat["output_ids"] == [5, 7]
    assert flat["meta_info"]["ttc_beam"] == meta_info["ttc_beam"] and flat["meta_info"] is not meta_info
    assert [r["text"] for r in flat["meta_info"]["beam_results"]] == ["best", "second"]


def test_session_runs_the_release_it_names():
    """nox's sglang-<version> session installs that release (its lock), and it is a supported one."""
    import os

    from ttc_plugins.engines import releases

    expected = os.environ.get("TTC_ENGINE_VERSION")
    if expected:
        assert sglang.__version__ == expected, (sglang.__version__, expected)
    assert sglang.__version__ in [r.version for r in releases("sglang").releases if r.status != "dropped"]
