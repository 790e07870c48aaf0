"""The engine-neutral mixed batch (plain, two steering configs, decoders) on sgl.Engine."""

from __future__ import annotations

import ttc_sglang_engine as helpers

from integration.common import scenarios


def _gen(engine):
    return lambda p, t, n: helpers.generate(engine, p, t, n)


def test_mixed_batch_matches_hf_reference_and_plain_rows_match_no_plugin(engine, reference, no_plugin_run):
    out = scenarios.mixed_batch(_gen(engine), reference)
    idx = scenarios.plain_indices(scenarios.MIXED_TTCS)
    plain_ref = no_plugin_run[0]
    scenarios.assert_bit_identical([out["got"][i] for i in idx], [plain_ref[i] for i in idx], "plain rows vs no plugin")


def test_all_plain_batch_is_bit_identical_to_no_plugin(engine, no_plugin_run):
    n = len(scenarios.PROMPTS)
    # A distinct cache salt: the prompts were cached by the previous test, and a prefix hit
    # changes how many tokens one forward computes, not the plugin's effect.
    outs = helpers.generate_raw(engine, scenarios.PROMPTS, [None] * n, scenarios.MAX_TOKENS, cache_salt="plain-run")
    scenarios.assert_bit_identical(helpers.rows(outs), no_plugin_run[0], "plain batch")
    assert all("ttc" not in o["meta_info"] for o in outs), "plain requests must not be tracked"


def test_named_vector_from_engine_config(engine, reference, named_vector):
    ttc = {"control": {"name": "steering", "layers": [2], "vector": "honest", "scale": 5.0}}
    inline = {"control": {**ttc["control"], "vector": named_vector[1]}}
    got = helpers.generate(engine, scenarios.PROMPTS[:2], [ttc, ttc], scenarios.MAX_TOKENS)
    scenarios.assert_matches(got, reference(scenarios.PROMPTS[:2], [inline, inline], scenarios.MAX_TOKENS), "named vector")


def test_finished_requests_report_kv_and_control_key(engine):
    outs = helpers.generate_raw(engine, scenarios.PROMPTS[:2], [scenarios.STEER_A, scenarios.FORCE], 4)
    steered, forced = (o["meta_info"] for o in outs)
    assert steered["ttc"]["control_key"] and len(steered["ttc"]["control_key"]) == 16
    assert forced["ttc"]["control_key"] is None
    for meta in (steered, forced):
        kv = meta["ttc"]["kv"]
        assert kv["tokens_reused"] == meta["cached_tokens"]
        assert kv["tokens_computed"] == meta["prompt_tokens"] - meta["cached_tokens"] + meta["completion_tokens"]
