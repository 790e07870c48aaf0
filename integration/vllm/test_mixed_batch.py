"""Mixed batches: plain, two steering configs, a decoder, in one batch; eager and compiled."""

from __future__ import annotations

import ttc_vllm_engine as engine

from integration.common import scenarios


def _rows(batch: list[dict]) -> list[tuple[list[int], list[float]]]:
    return [(r["token_ids"], r["logprobs"]) for r in batch]


def test_mixed_batch_eager_matches_hf_reference(eager_llm, reference, no_plugin_run):
    gen = lambda p, t, n: engine.generate(eager_llm, p, t, n)  # noqa: E731
    out = scenarios.mixed_batch(gen, reference)
    # plain rows: bit-identical to the same batch on an engine without the plugin
    plain_ref = _rows(no_plugin_run[0]["batches"][0])
    idx = scenarios.plain_indices(scenarios.MIXED_TTCS)
    scenarios.assert_bit_identical([out["got"][i] for i in idx], [plain_ref[i] for i in idx], "eager plain rows")


def test_all_plain_batch_on_plugin_engine_is_bit_identical_to_no_plugin(eager_llm, no_plugin_run):
    n = len(scenarios.PROMPTS)
    got = engine.generate(eager_llm, scenarios.PROMPTS, [None] * n, scenarios.MAX_TOKENS)
    scenarios.assert_bit_identical(got, _rows(no_plugin_run[0]["batches"][0]), "plain batch")


def test_named_vector_from_engine_config(eager_llm, reference, named_vector):
    ttc = {"control": {"name": "steering", "layers": [2], "vector": "honest", "scale": 5.0}}
    inline = {"control": {**ttc["control"], "vector": named_vector[1]}}
    got = engine.generate(eager_llm, scenarios.PROMPTS[:2], [ttc, ttc], scenarios.MAX_TOKENS)
    scenarios.assert_matches(got, reference(scenarios.PROMPTS[:2], [inline, inline], scenarios.MAX_TOKENS),
                             "named vector")


def test_mixed_batch_compiled_matches_hf_reference(compiled_run, reference, no_plugin_run, compiled_no_plugin_run):
    result, _ = compiled_run
    plain_batch, mixed = _rows(result["batches"][0]), _rows(result["batches"][1])
    scenarios.mixed_batch(lambda p, t, n: mixed, reference)
    idx = scenarios.plain_indices(scenarios.MIXED_TTCS)
    # plain rows: bit-identical to the same batch on a compiled engine without the plugin
    nop = _rows(compiled_no_plugin_run[0]["batches"][0])
    scenarios.assert_bit_identical([mixed[i] for i in idx], [nop[i] for i in idx], "compiled plain rows vs no plugin")
    # plain rows are bit-identical to the same rows in an all-plain batch of the same compiled engine
    scenarios.assert_bit_identical([mixed[i] for i in idx], [plain_batch[i] for i in idx], "compiled plain rows")
    # and equal (greedy) / close (logprobs) to the eager engine without the plugin
    scenarios.assert_matches(plain_batch, _rows(no_plugin_run[0]["batches"][0]), "compiled vs no-plugin eager")
