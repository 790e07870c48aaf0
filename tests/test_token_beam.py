"""Token beam search rules (engine-free): selection, stopping, length penalty, early stopping."""

from __future__ import annotations

import math

import pytest

from ttc_plugins.token_beam import BeamParams, TokenBeam, beam_score

EOS = 0


def _beam(width: int, max_tokens: int = 10, **kw) -> TokenBeam:
    return TokenBeam(BeamParams(width=width, **kw), max_tokens, {EOS}.__contains__)


def lp(p: float) -> float:
    return math.log(p)


def test_candidates_are_ranked_by_cumulative_logprob_across_beams():
    b = _beam(2)
    first = b.step([[(5, lp(0.6)), (6, lp(0.3)), (7, lp(0.05)), (8, lp(0.05))]])
    assert [(c.parent, c.token) for c in first] == [(0, 5), (0, 6)]
    # beam 5 continues weakly, beam 6 strongly: 6->9 (0.3*0.9) beats 5->1 (0.6*0.4)
    second = b.step([[(1, lp(0.4)), (2, lp(0.3)), (3, lp(0.2)), (4, lp(0.1))],
                     [(9, lp(0.9)), (1, lp(0.05)), (2, lp(0.03)), (3, lp(0.02))]])
    assert [(c.parent, c.token) for c in second] == [(1, 9), (0, 1)]
    assert b.tokens == [(6, 9), (5, 1)]
    assert b.cumulative == pytest.approx([lp(0.3 * 0.9), lp(0.6 * 0.4)])


def test_only_the_first_proposals_count():
    b = _beam(1)
    b.step([[(5, lp(0.5)), (6, lp(0.4)), (7, lp(0.99))]])  # 2*width = 2: token 7 is never seen
    assert b.tokens == [(5,)]


def test_eos_finishes_a_hypothesis_only_within_the_top_width():
    b = _beam(2, max_tokens=5)
    b.step([[(5, lp(0.5)), (EOS, lp(0.3)), (6, lp(0.1)), (7, lp(0.1))]])
    assert [h.token_ids for h in b.finished] == [(EOS,)]
    assert b.tokens == [(5,), (6,)]  # EOS took rank 1, the next live beam comes from rank 2
    b2 = _beam(1, max_tokens=5)
    b2.step([[(5, lp(0.6)), (EOS, lp(0.4))]])
    assert b2.finished == []  # rank 1 >= width 1: skipped


def test_length_penalty_scores_by_generated_length_including_eos():
    assert beam_score(-6.0, 3, 1.0) == -2.0
    assert beam_score(-6.0, 3, 0.0) == -6.0
    b = _beam(1, max_tokens=2, length_penalty=2.0)
    b.step([[(5, lp(0.5)), (6, lp(0.5))]])
    b.step([[(EOS, lp(0.8)), (7, lp(0.2))]])
    (h,) = b.results()
    assert h.token_ids == (5, EOS) and h.finish_reason == "stop" and h.stop_reason == EOS
    assert h.score == pytest.approx((lp(0.5) + lp(0.8)) / 4)
    assert b.done


def test_max_tokens_finishes_live_beams_with_length():
    b = _beam(2, max_tokens=1)
    assert b.step([[(5, lp(0.5)), (6, lp(0.4)), (7, lp(0.05)), (8, lp(0.05))]]) == []
    assert b.done and [h.token_ids for h in b.results()] == [(5,), (6,)]
    assert {h.finish_reason for h in b.results()} == {"length"}
    with pytest.raises(RuntimeError):
        b.step([[(1, 0.0)]])




@pytest.mark.parametrize("mode,done", [(True, True), (False, True), ("never", False)])
def test_early_stopping_modes(mode, done):
    b = _beam(2, max_tokens=50, early_stopping=mode)
    b.step([[(EOS, lp(0.5)), (3, lp(0.3)), (4, lp(0.1)), (5, lp(0.1))]])
    assert not b.done  # one finished hypothesis, width 2
    b.step([[(EOS, lp(0.9)), (6, lp(0.05)), (7, lp(0.03)), (8, lp(0.02))],
            [(9, lp(0.5)), (EOS, lp(0.4)), (1, lp(0.05)), (2, lp(0.05))]])
    # finished: (EOS,) and (3, EOS); live: (3, 6) and (4, 9) score far below the worst finished
    # at their current length, but with lp=1 and 50 tokens "never" keeps hoping
    assert len(b.finished) == 2
    assert b.done is done


def test_params_bound_the_width():
    with pytest.raises(ValueError):
        BeamParams(width=0)
    with pytest.raises(ValueError):
        BeamParams(width=2, early_stopping="sometimes")
    assert BeamParams(width=2).early_stopping is False


def test_stop_strings_finish_a_beam_like_a_stop_token():
    text = {(5,): "a", (6,): "b", (5, 7): "a\n", (5, 8): "ax", (6, 7): "b\n", (6, 8): "bx"}
    b = TokenBeam(BeamParams(width=2), 5, {EOS}.__contains__,
                  lambda toks: "\n" if "\n" in text.get(toks, "") else None)
    b.step([[(5, lp(0.6)), (6, lp(0.4)), (9, lp(0.0001)), (10, lp(0.0001))]])
    b.step([[(7, lp(0.9)), (8, lp(0.1)), (9, lp(0.0001)), (10, lp(0.0001))],
            [(8, lp(0.9)), (7, lp(0.1)), (9, lp(0.0001)), (10, lp(0.0001))]])
    assert [(h.token_ids, h.finish_reason, h.stop_reason) for h in b.finished] == [((5, 7), "stop", "\n")]
    assert b.tokens == [(6, 8), (5, 8)]  # (6, 7) ranked below width: skipped, as an EOS would be
