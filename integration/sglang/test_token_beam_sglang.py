"""Token-level beam search inside SGLang's scheduler (``ttc.beam``; ``sglang_backend.beam_scheduler``)
on the suite's engines (tiny random Llama, float32, CPU, page size 1).

Checked against the plain HF beam search of ``integration/common/hf_reference.py`` (same weights,
float32, no engine code): same beams (token ids), same cumulative logprobs and scores. KV: the
members of a search alias the leader's prompt slots and take over their parents' slots (nothing
recomputed), and every slot and request row comes back (SGLang's own allocator counters).
"""

from __future__ import annotations

import threading
import time

import openai
import pytest
import requests
import ttc_sglang_engine as helpers

from integration.common import scenarios

SHORT = [7, 8, 9, 10]
LONG = [(i * 37 + 11) % 2000 + 5 for i in range(300)]


def _sp(beam: dict | None, max_tokens: int, **kw) -> dict:
    sp = {"max_new_tokens": max_tokens, **kw}
    if beam is not None:
        sp["custom_params"] = {"ttc": {"beam": beam}}
    return sp


def _beam(engine, prompts, beam, max_tokens, **kw) -> list[dict]:
    outs = engine.generate(input_ids=[list(p) for p in prompts], sampling_params=[_sp(beam, max_tokens, **kw)] * len(prompts))
    return outs if isinstance(outs, list) else [outs]


def _eos(engine) -> int | None:
    return engine.tokenizer_manager.tokenizer.eos_token_id


def _report(out: dict) -> dict:
    return out["meta_info"]["ttc"]["beam"]


def _assert_same_beams(out, ref):
    beams = _report(out)["beams"]
    assert [b["token_ids"] for b in beams] == [r[0] for r in ref]
    assert [b["cumulative_logprob"] for b in beams] == pytest.approx([r[1] for r in ref], abs=2e-3)
    assert [b["score"] for b in beams] == pytest.approx([r[2] for r in ref], abs=2e-3)
    assert out["output_ids"] == beams[0]["token_ids"]  # the answer is the best beam


def _no_leak(engine_kv: dict) -> None:
    """SGLang's counters with no request running: every slot is free or in the radix cache, every
    request row is free."""
    assert engine_kv["tokens_free"] + engine_kv["tokens_radix_cached"] == engine_kv["tokens_total"], engine_kv
    assert engine_kv["req_rows_free"] == engine_kv["req_rows_total"], engine_kv


def test_forks_share_the_parents_slots_and_recompute_no_prefix(engine):
    width, max_tokens = 4, 8
    fresh = [(i * 53 + 7) % 2000 + 5 for i in range(300)]  # not in the radix cache yet
    (out,) = _beam(engine, [fresh], {"width": width}, max_tokens=max_tokens)
    kv = _report(out)["kv"]
    assert out["meta_info"]["cached_tokens"] == 0 and kv["prompt_tokens_cached"] == 0
    assert kv["prompt_tokens"] == len(fresh) and kv["rows"] == width
    # the prompt ran once (the leader's prefill); each later step ran one token per row: the
    # members never ran a prompt token, they alias the leader's slots
    assert kv["tokens_computed"] == len(fresh) + width * (kv["steps"] - 1)
    assert kv["recompute_forks"] == 0 and kv["forks"] >= width - 1
    assert kv["tokens_shared_by_fork"] >= (width - 1) * len(fresh)
    # distinct slots held at the peak: one prompt plus the decode windows, far below `width` prompts
    assert len(fresh) < kv["peak_blocks"] <= len(fresh) + width * max_tokens
    # and everything came back: the next search is admitted on clean pools
    (nxt,) = _beam(engine, [SHORT], {"width": 2}, max_tokens=2)
    _no_leak(_report(nxt)["kv"]["engine_at_admission"])


def test_plain_requests_batched_with_beam_ones_are_unchanged(engine, reference):
    prompts = [scenarios.PROMPTS[0], SHORT, scenarios.PROMPTS[3], LONG[:40]]
    sps = [helpers.sampling(None, 6), _sp({"width": 3}, 6), helpers.sampling(None, 6), _sp({"width": 2}, 6)]
    outs = engine.generate(input_ids=[list(p) for p in prompts], sampling_params=sps)
    ref = reference([prompts[0], prompts[2]], [None, None], 6)
    assert [outs[0]["output_ids"], outs[2]["output_ids"]] == [ref[0][0], ref[1][0]]
    assert "ttc" not in outs[0]["meta_info"] and "beam_results" not in outs[0]["meta_info"]
    assert len(_report(outs[1])["beams"]) == 3 and len(_report(outs[3])["beams"]) == 2


def test_no_kv_leaked_after_200_searches_and_an_abort(engine):
    widths = [1, 2, 3, 4]
    done = 0
    for batch in range(4):
        prompts = [[5 + (batch * 50 + i) % 97, 11 + i % 13, 17] for i in range(50)]
        outs = engine.generate(
            input_ids=prompts,
            sampling_params=[_sp({"width": widths[i % 4], "early_stopping": [False, True, "never"][i % 3]}, 3 + i % 4)
                             for i in range(50)])
        assert all(len(_report(o)["beams"]) == widths[i % 4] for i, o in enumerate(outs))
        done += len(outs)
    assert done == 200
    # an abort in the middle of a search releases its rows and slots too
    rid = "ttc-beam-abort-me"
    result: dict = {}

    def run():
        try:
            result["out"] = engine.generate(input_ids=LONG, sampling_params=_sp({"width": 4}, 400), rid=rid)
        except Exception as exc:  # an aborted request may surface as an error
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    time.sleep(2.0)
    engine.loop.call_soon_threadsafe(engine.tokenizer_manager.abort_request, rid)
    t.join(timeout=120)
    assert not t.is_alive()
    out = result.get("out")
    if out is not None:  # it was aborted mid-search, not finished
        assert out["meta_info"]["finish_reason"]["type"] == "abort", out["meta_info"]["finish_reason"]
        assert "ttc" not in out["meta_info"] or "beam" not in out["meta_info"]["ttc"]
    else:
        assert "abort" in str(result["error"]).lower(), result["error"]
    time.sleep(0.5)
    (nxt,) = _beam(engine, [SHORT], {"width": 2}, max_tokens=2)
    _no_leak(_report(nxt)["kv"]["engine_at_admission"])


@pytest.mark.parametrize("sp, field", [
    (_sp({"width": 0}, 4), r"ttc\.beam\.width"),
    (_sp({"width": 17}, 4), r"ttc\.beam\.width"),
    (_sp({"width": 2, "early_stopping": "sometimes"}, 4), r"ttc\.beam\.early_stopping"),
    (_sp({"width": 2}, 4, n=2), r"\bn: ttc\.beam answers"),
    (_sp({"width": 2}, 4, stop=["x"]), r"stop: ttc\.beam on SGLang stops on tokens only"),
], ids=["width0", "above-limit", "early-stopping", "n2", "stop-strings"])
def test_bad_beam_settings_raise_naming_the_field_and_the_engine_keeps_serving(engine, sp, field):
    with pytest.raises(ValueError, match=field):
        engine.generate(input_ids=SHORT, sampling_params=sp)
    (ok,) = _beam(engine, [SHORT], {"width": 2}, max_tokens=3)
    assert len(_report(ok)["beams"]) == 2


# ------------------------------------------------------------------------------------------------
# SGLang's OpenAI server
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=120)


def _model(client) -> str:
    return client.models.list().data[0].id


@pytest.mark.parametrize("body, field", [
    ({"custom_params": {"ttc": {"beam": {"width": 0}}}}, "ttc.beam.width"),
    ({"custom_params": {"ttc": {"beam": {"width": 99}}}}, "ttc.beam.width"),
    ({"custom_params": {"ttc": {"beam": {"width": 2}}}, "n": 2}, "n"),
    ({"custom_params": {"ttc": {"beam": {"width": 2}}}, "stream": True}, "stream"),
], ids=["width0", "above-limit", "n2", "stream"])
def test_openai_bad_beam_is_a_400_naming_the_field(server, client, body, field):
    for path, extra in (("completions", {"prompt": "hello"}), ("chat/completions", {"messages": [{"role": "user", "content": "hi"}]})):
        r = requests.post(f"{server}/v1/{path}", json={"model": _model(client), "max_tokens": 3, **extra, **body}, timeout=60)
        assert r.status_code == 400, (path, r.status_code, r.text)
        err = r.json()
        err = err.get("error", err)
        assert err.get("param") == field and field in err.get("message", ""), (path, err)
    ok = client.completions.create(model=_model(client), prompt="hello", max_tokens=3, temperature=0)
    assert ok.usage.completion_tokens == 3


def test_every_beam_carries_its_text(engine):
    (out,) = _beam(engine, [SHORT], {"width": 2}, max_tokens=6)
    beams = _report(out)["beams"]
    assert len(beams) == 2 and all(isinstance(b["text"], str) for b in beams)
    assert beams[0]["text"] == out["text"]
