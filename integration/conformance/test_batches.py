"""Plain, steered and decoded requests in one batch, on every engine: controlled rows equal the
HF reference, plain rows stay bit-identical to an engine without the plugin."""

from __future__ import annotations

from integration.common import scenarios


def test_mixed_batch_matches_hf_reference_and_plain_rows_match_no_plugin(engine_generate, reference,
                                                                       engine_plain_run):
    out = scenarios.mixed_batch(engine_generate, reference)
    idx = scenarios.plain_indices(scenarios.MIXED_TTCS)
    scenarios.assert_bit_identical([out["got"][i] for i in idx], [engine_plain_run[i] for i in idx],
                                   "plain rows vs no plugin")


def test_all_plain_batch_is_bit_identical_to_no_plugin(engine_generate, engine_plain_run):
    n = len(scenarios.PROMPTS)
    # A distinct cache salt: the prompts were cached by the previous test, and a prefix hit
    # changes how many tokens one forward computes, not the plugin's effect.
    got = engine_generate(scenarios.PROMPTS, [None] * n, scenarios.MAX_TOKENS, cache_salt="plain-run")
    scenarios.assert_bit_identical(got, engine_plain_run, "plain batch")


def test_named_vector_from_engine_config(engine_generate, reference, named_vector):
    ttc = {"control": {"name": "steering", "layers": [2], "vector": "honest", "scale": 5.0}}
    inline = {"control": {**ttc["control"], "vector": named_vector[1]}}
    got = engine_generate(scenarios.PROMPTS[:2], [ttc, ttc], scenarios.MAX_TOKENS)
    scenarios.assert_matches(got, reference(scenarios.PROMPTS[:2], [inline, inline], scenarios.MAX_TOKENS),
                             "named vector")
