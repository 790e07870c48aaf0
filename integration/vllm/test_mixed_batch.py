"""Mixed batches: plain, two steering configs, a decoder, in one batch; eager and compiled."""

from __future__ import annotations

from integration.common import scenarios


def _rows(batch: list[dict]) -> list[tuple[list[int], list[float]]]:
    return [(r["token_ids"], r["logprobs"]) for r in batch]


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
