"""Token-level beam search inside vLLM's scheduler (``vllm_backend.beam_scheduler``, ``ttc.beam``)
on the suite's in-process engine (tiny random Llama, float32, CPU block size 128).

Checked against the plain HF beam search of ``integration/common/hf_reference.py`` (same weights,
float32, no engine code): same beams (token ids), same cumulative logprobs and scores. KV: forks
share the parent's blocks (no prefix token computed twice) and every block comes back.
"""

from __future__ import annotations

import pytest

pytest.importorskip("vllm")

SHORT = [7, 8, 9, 10]  # inside the first block: every fork copies the tail block
LONG = [(i * 37 + 11) % 2000 + 5 for i in range(300)]  # 2 full blocks + a 44-token tail


def _scheduler(llm):
    """The in-process engine's scheduler (test-only reach: the suite runs EngineCore in-process)."""
    return llm.llm_engine.engine_core.engine_core.scheduler


def _beam(llm, prompts, beam, max_tokens, **sp_kw):
    from vllm import SamplingParams

    sp = SamplingParams(max_tokens=max_tokens, extra_args={"ttc": {"beam": beam}}, **sp_kw)
    return llm.generate([{"prompt_token_ids": list(p)} for p in prompts], sp, use_tqdm=False)


def _eos(llm) -> int | None:
    return llm.get_tokenizer().eos_token_id


def _assert_same_beams(out, ref):
    beams = out.ttc["beam"]["beams"]
    assert [b["token_ids"] for b in beams] == [r[0] for r in ref]
    assert [b["cumulative_logprob"] for b in beams] == pytest.approx([r[1] for r in ref], abs=2e-3)
    assert [b["score"] for b in beams] == pytest.approx([r[2] for r in ref], abs=2e-3)
    assert list(out.outputs[0].token_ids) == beams[0]["token_ids"]  # the answer is the best beam


def test_forks_share_the_parents_blocks_and_recompute_no_prefix(eager_llm):
    width, max_tokens = 4, 8
    fresh = [(i * 53 + 7) % 2000 + 5 for i in range(300)]  # not in the prefix cache yet
    (out,) = _beam(eager_llm, [fresh], {"width": width}, max_tokens=max_tokens)
    kv = out.ttc["beam"]["kv"]
    assert kv["recompute_forks"] == 0 and kv["forks"] >= width - 1
    # full blocks by reference, the 44-token tail (+ new tokens) copied, never recomputed:
    # the prompt once, then one token per live beam per step
    assert kv["blocks_shared_by_fork"] >= 2 * kv["forks"]
    assert kv["tail_tokens_copied"] >= 44 * kv["forks"]
    assert kv["tokens_shared_by_fork"] >= len(fresh) * kv["forks"]
    assert kv["prompt_tokens"] == len(fresh)
    assert len(fresh) < kv["tokens_computed"] <= len(fresh) + width * (max_tokens - 1)
    assert 0 < kv["peak_blocks"] < width * 4  # 3 blocks per beam unshared; forks share two of them
    # what the KV hooks (ttc_kv_report) and output.ttc["kv"] see: the search's own accounting
    assert out.ttc["kv"]["tokens_computed"] == kv["tokens_computed"]
    assert out.ttc["kv"]["tokens_reused"] == kv["tokens_shared_by_fork"] + out.num_cached_tokens


def test_200_searches_release_every_block(eager_llm):
    from ttc_plugins.vllm_backend import kv_fork

    sched = _scheduler(eager_llm)
    prompts = [SHORT, LONG, [3] * 129, [4, 5] * 70]
    done = 0
    for width in (1, 2, 3, 4, 2):
        batch = [prompts[i % len(prompts)] + [i] for i in range(40)]
        outs = _beam(eager_llm, batch, {"width": width, "early_stopping": True}, max_tokens=5)
        assert all(o.finished and len(o.ttc["beam"]["beams"]) == width for o in outs)
        done += len(outs)
    assert done == 200
    assert kv_fork.blocks_in_use(sched.kv_cache_manager) == 0
    assert not sched.requests and not sched.running and not sched._lane_search and not sched._parked


def test_plain_requests_batched_with_beams_are_unchanged(eager_llm, hf):
    from vllm import SamplingParams

    plain = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
    beam = SamplingParams(max_tokens=8, extra_args={"ttc": {"beam": {"width": 4}}})
    outs = eager_llm.generate([{"prompt_token_ids": LONG}, {"prompt_token_ids": LONG}, {"prompt_token_ids": SHORT}],
                              [plain, beam, plain], use_tqdm=False)
    assert list(outs[0].outputs[0].token_ids) == hf.generate_one(LONG, None, 8)[0]
    assert list(outs[2].outputs[0].token_ids) == hf.generate_one(SHORT, None, 8)[0]
    assert list(outs[1].outputs[0].token_ids) == hf.beam_search(LONG, 4, 8, _eos(eager_llm))[0][0]


@pytest.mark.parametrize("beam,field", [
    ({"width": 0}, "ttc.beam.width"),
    ({"width": 11}, "ttc.beam.width"),  # max_logprobs 20 bounds the width at 10
    ({"width": 2, "early_stopping": "sometimes"}, "ttc.beam.early_stopping"),
    ({"width": 2, "beams": 3}, "ttc.beam.beams"),
])
def test_bad_beam_settings_are_refused_naming_the_field(eager_llm, beam, field):
    from vllm.exceptions import VLLMValidationError

    with pytest.raises(VLLMValidationError, match=field.replace(".", r"\.")):
        _beam(eager_llm, [SHORT], beam, max_tokens=4)
    (ok,) = _beam(eager_llm, [SHORT], {"width": 2}, max_tokens=4)  # the engine keeps serving
    assert ok.finished and len(ok.outputs[0].token_ids) == 4


def test_beam_with_n_above_one_is_refused(eager_llm):
    from vllm.exceptions import VLLMValidationError

    with pytest.raises(VLLMValidationError, match=r"^n: a ttc\.beam request"):
        _beam(eager_llm, [SHORT], {"width": 2}, max_tokens=4, n=2)


def test_beam_with_decoding_hooks_is_refused(eager_llm):
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError

    sp = SamplingParams(max_tokens=4, extra_args={"ttc": {"beam": {"width": 2},
                                                          "decoding": [{"name": "ban_tokens", "token_ids": [1]}]}})
    with pytest.raises(VLLMValidationError, match=r"ttc\.beam: cannot be combined with ttc\.decoding"):
        eager_llm.generate([{"prompt_token_ids": SHORT}], sp, use_tqdm=False)


def test_fork_of_a_finished_or_unknown_request_is_an_error(eager_llm):
    sched = _scheduler(eager_llm)
    (done,) = _beam(eager_llm, [SHORT], {"width": 2}, max_tokens=2)
    for rid in (done.request_id, "no-such-request"):
        with pytest.raises(ValueError, match="finished or unknown"):
            sched.fork_request(rid, [1, 2])


def test_stop_strings_end_beams_like_the_reference(eager_llm, hf):
    tok = eager_llm.get_tokenizer()
    plain = hf.beam_search(SHORT, 2, 10, _eos(eager_llm))
    # a character the unconstrained best beam writes with its second token (a top-ranked pick)
    first, second = (tok.decode(plain[0][0][:n], skip_special_tokens=True) for n in (1, 2))
    stop = next(c for c in second[len(first):] if c.strip() and c not in first)
    # length_penalty 0 (score = logprob sum): the short stopped hypothesis outranks 10-token beams
    (out,) = _beam(eager_llm, [SHORT], {"width": 2, "length_penalty": 0.0}, max_tokens=10, stop=[stop])
    ref = hf.beam_search(SHORT, 2, 10, _eos(eager_llm), length_penalty=0.0, stop=[stop])
    _assert_same_beams(out, ref)
    stopped = [b for b in out.ttc["beam"]["beams"] if b["finish_reason"] == "stop"]
    assert stopped and all(b["stop_reason"] == stop for b in stopped)
    assert out.ttc["beam"]["beams"][0]["finish_reason"] == "stop"
    assert stop not in out.outputs[0].text and out.outputs[0].stop_reason == stop  # trimmed by the frontend


def test_aborting_a_search_mid_generation_releases_every_lane(eager_llm):
    from vllm import SamplingParams

    from ttc_plugins.vllm_backend import kv_fork

    engine, sched = eager_llm.llm_engine, _scheduler(eager_llm)
    sp = SamplingParams(max_tokens=40, extra_args={"ttc": {"beam": {"width": 4}}})
    engine.add_request("abort-me", {"prompt_token_ids": LONG + [1]}, sp)
    for _ in range(6):
        engine.step()
    lanes = [rid for rid in sched.requests if rid.startswith("abort-me")]
    assert len(lanes) == 4 and kv_fork.blocks_in_use(sched.kv_cache_manager) > 0  # mid-search
    engine.abort_request(["abort-me"])
    while engine.has_unfinished_requests():
        engine.step()
    assert kv_fork.blocks_in_use(sched.kv_cache_manager) == 0
    assert not sched.requests and not sched._lane_search and not sched._searches


def test_bench_smoke(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "smoke.md"
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_token_beam.py"), "--smoke",
                           "--results", str(out)], capture_output=True, text=True, timeout=600, cwd=str(root))
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = out.read_text()
    assert "| 2 |" in report and "0 recomputed" in report
