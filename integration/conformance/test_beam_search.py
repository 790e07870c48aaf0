"""Token-level beam search inside the engine's scheduler (``ttc.beam``), on every engine: the same
beams (token ids), cumulative logprobs and scores as the plain HF beam search of
``integration/common/hf_reference.py`` (same weights, float32, no engine code)."""

from __future__ import annotations

import pytest

SHORT = [7, 8, 9, 10]
LONG = [(i * 37 + 11) % 2000 + 5 for i in range(300)]


def _assert_same_beams(out, ref):
    beams = out.report["beams"]
    assert [b["token_ids"] for b in beams] == [r[0] for r in ref]
    assert [b["cumulative_logprob"] for b in beams] == pytest.approx([r[1] for r in ref], abs=2e-3)
    assert [b["score"] for b in beams] == pytest.approx([r[2] for r in ref], abs=2e-3)
    assert out.token_ids == beams[0]["token_ids"]  # the answer is the best beam


@pytest.mark.parametrize("width", [1, 2, 4])
@pytest.mark.parametrize("prompt", [SHORT, LONG], ids=["short", "long"])
def test_beams_and_scores_equal_the_hf_reference(engine_beam, engine_eos, hf, width, prompt):
    (out,) = engine_beam([prompt], {"width": width}, 10)
    _assert_same_beams(out, hf.beam_search(prompt, width, 10, engine_eos))
    assert len(out.report["beams"]) == width


@pytest.mark.parametrize("beam", [
    {"width": 3, "length_penalty": 0.0, "early_stopping": True},
    {"width": 3, "length_penalty": 2.0, "early_stopping": False},
    {"width": 3, "length_penalty": 1.0, "early_stopping": "never"},
    {"width": 2, "length_penalty": -1.0, "early_stopping": False},
], ids=["lp0-early", "lp2-heuristic", "lp1-never", "lp-neg"])
def test_stop_tokens_length_penalty_and_early_stopping_follow_the_reference(engine_beam, engine_eos, hf, beam):
    # the reference's own greedy continuation names stop tokens that the beams do reach
    greedy, _ = hf.generate_one(SHORT, None, 6)
    stops = sorted(set(greedy[1:4]))
    (out,) = engine_beam([SHORT], beam, 12, stop_token_ids=stops)
    ref = hf.beam_search(SHORT, beam["width"], 12, engine_eos, length_penalty=beam["length_penalty"],
                         early_stopping=beam["early_stopping"], stop_token_ids=stops)
    _assert_same_beams(out, ref)
    beams = out.report["beams"]
    terminal = set(stops) | {engine_eos}
    assert [b["finish_reason"] for b in beams] == ["stop" if r[0][-1] in terminal else "length" for r in ref]
    if beam["early_stopping"] is True:  # it ends as soon as `width` hypotheses hit a stop token
        assert all(b["finish_reason"] == "stop" for b in beams) and len(beams[0]["token_ids"]) < 12
    assert out.finish_reason == beams[0]["finish_reason"]


def test_a_token_beam_over_the_openai_api_answers_the_best_beam_of_the_reference(engine_openai, engine_eos, hf):
    """``ttc.beam`` on the engine's own server: the answer is the best beam, the report (under
    ``ttc.beam``, never in the engine's own fields) the reference's beams; chat completions too."""
    from integration.common import scenarios

    client, model, extra_body = engine_openai
    prompt = scenarios.PROMPTS[2]
    r = client.completions.create(model=model, prompt=prompt, max_tokens=8, extra_body=extra_body({"beam": {"width": 3}}))
    report = r.model_extra["ttc"]["beam"]
    ref = hf.beam_search(prompt, 3, 8, engine_eos)
    assert [b["token_ids"] for b in report["beams"]] == [x[0] for x in ref]
    assert [b["score"] for b in report["beams"]] == pytest.approx([x[2] for x in ref], abs=2e-3)
    assert report["kv"]["forks"] >= 2 and not r.model_extra.get("kv_transfer_params")
    chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say hi"}], max_tokens=6,
                                          extra_body=extra_body({"beam": {"width": 2}}))
    beams = chat.model_extra["ttc"]["beam"]["beams"]
    assert len(beams) == 2 and all(b["token_ids"] for b in beams) and beams[0]["score"] >= beams[1]["score"]
    assert chat.choices[0].message.content is not None
