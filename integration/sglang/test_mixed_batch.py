"""The engine-neutral mixed batch (plain, two steering configs, decoders) on sgl.Engine."""

from __future__ import annotations

import ttc_sglang_engine as helpers

from integration.common import scenarios


def _gen(engine):
    return lambda p, t, n: helpers.generate(engine, p, t, n)


def test_finished_requests_report_kv_and_control_key(engine):
    outs = helpers.generate_raw(engine, scenarios.PROMPTS[:2], [scenarios.STEER_A, scenarios.FORCE], 4)
    steered, forced = (o["meta_info"] for o in outs)
    assert steered["ttc"]["control_key"] and len(steered["ttc"]["control_key"]) == 16
    assert forced["ttc"]["control_key"] is None
    for meta in (steered, forced):
        kv = meta["ttc"]["kv"]
        assert kv["tokens_reused"] == meta["cached_tokens"]
        assert kv["tokens_computed"] == meta["prompt_tokens"] - meta["cached_tokens"] + meta["completion_tokens"]
