"""Radix-cache isolation per control configuration, and KV accounting from the radix cache."""

from __future__ import annotations

import ttc_sglang_engine as helpers

from integration.common import scenarios

N = 6


def test_steered_then_unsteered_long_prompt_matches_unsteered_reference(engine, reference):
    prompt = scenarios.LONG_PROMPT
    steered = helpers.generate_raw(engine, [prompt], [scenarios.STEER_A], N)[0]
    plain = helpers.generate_raw(engine, [prompt], [None], N)[0]
    # The unsteered request must not reuse KV computed under the control ...
    assert plain["meta_info"]["cached_tokens"] == 0, plain["meta_info"]
    # ... so it matches the unsteered reference, while the steered one matched the steered one.
    scenarios.assert_matches(helpers.rows([plain]), reference([prompt], [None], N), "unsteered after steered")
    scenarios.assert_matches(helpers.rows([steered]), reference([prompt], [scenarios.STEER_A], N), "steered")
    scenarios.assert_steering_changes_output(helpers.rows([steered]), helpers.rows([plain]), "long prompt")


def test_same_control_reuses_its_own_prefix_and_reports_it(engine):
    prompt = scenarios.LONG_PROMPT[:300] + [5, 6, 7]
    first = helpers.generate_raw(engine, [prompt], [scenarios.STEER_B], 2)[0]["meta_info"]
    again = helpers.generate_raw(engine, [prompt[:300] + [8, 9]], [scenarios.STEER_B], 2)[0]["meta_info"]
    other = helpers.generate_raw(engine, [prompt[:300] + [10, 11]], [scenarios.STEER_A_NORM], 2)[0]["meta_info"]
    assert first["ttc"]["kv"]["tokens_reused"] == first["cached_tokens"]
    assert again["cached_tokens"] >= 300 and again["ttc"]["kv"]["tokens_reused"] == again["cached_tokens"]
    assert other["cached_tokens"] == 0, "a different control reused another control's prefix"

