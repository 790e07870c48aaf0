"""Prefix-cache isolation per control configuration, KV accounting, prefix-sharing forks."""

from __future__ import annotations

import ttc_vllm_engine as engine

from integration.common import scenarios

LONG = scenarios.LONG_PROMPT


def test_prefix_cache_isolation_compiled(compiled_run, reference):
    result, _ = compiled_run
    rows = [(b[0]["token_ids"], b[0]["logprobs"]) for b in result["batches"][2:5]]
    scenarios.assert_matches([rows[0], rows[2]], reference([LONG], [None], 4) * 2, "compiled unsteered")
    scenarios.assert_matches([rows[1]], reference([LONG], [scenarios.LONG_STEER], 4), "compiled steered")
    assert result["batches"][3][0]["ttc"]["kv"]["tokens_reused"] == 0
    assert result["batches"][4][0]["num_cached_tokens"] >= 384


def test_kv_accounting_and_prefix_fork(eager_llm, reference):
    """A fork is a new request whose prompt extends the parent's tokens: the engine shares the
    parent's full blocks, and the accounting (hooks + ``output.ttc``) shows reused vs computed."""
    from ttc_plugins import hookimpl
    from ttc_plugins.manager import get_plugin_manager

    seen = []

    class Recorder:
        @hookimpl
        def ttc_kv_report(self, ctx, stats):
            seen.append((ctx.request_id, stats))

        @hookimpl
        def ttc_request_finished(self, ctx, report):
            seen.append((ctx.request_id, report.finish_reason))

    pm = get_plugin_manager()
    name = pm.register(Recorder(), name="test-kv-recorder")
    try:
        eager_llm.reset_prefix_cache()
        (parent, po), = engine.generate(eager_llm, [LONG], [scenarios.LONG_STEER], 8, with_outputs=True)
        child_prompt = LONG + parent[0]
        (child, co), = engine.generate(eager_llm, [child_prompt], [scenarios.LONG_STEER], 4, with_outputs=True)
    finally:
        pm.unregister(name)
    assert po.ttc["kv"] == {"tokens_computed": len(LONG) + 8, "tokens_reused": 0, "blocks_held": 4, "peak_blocks": 4}
    reused = co.ttc["kv"]["tokens_reused"]
    assert reused == co.num_cached_tokens and reused >= 384, co.ttc
    assert co.ttc["kv"]["tokens_computed"] == len(child_prompt) - reused + 4
    assert co.ttc["control_key"] == po.ttc["control_key"]
    # the forked continuation equals continuing the parent in the reference
    scenarios.assert_matches([child], reference([child_prompt], [scenarios.LONG_STEER], 4), "fork")
    kinds = [type(x[1]).__name__ for x in seen]
    assert kinds == ["KVStats", "str", "KVStats", "str"], seen
    assert seen[0][1].tokens_reused == 0 and seen[2][1].tokens_reused == reused
