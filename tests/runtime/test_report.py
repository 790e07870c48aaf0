"""A finished request's accounting and hooks, the same on every engine (engine-free)."""

from __future__ import annotations

from ttc_plugins import hookimpl
from ttc_plugins.runtime.report import beam_kv_stats, beam_report, finish_request, kv_stats
from ttc_plugins.types import ControlSpec, KVStats, RequestContext


def test_kv_stats_counts_reused_prompt_tokens_and_blocks():
    assert kv_stats(460, 384, 4, 128) == KVStats(tokens_computed=80, tokens_reused=384, blocks_held=4, peak_blocks=4)
    assert kv_stats(10, 50, 0, None) == KVStats(tokens_computed=0, tokens_reused=10, blocks_held=0, peak_blocks=0)
    assert kv_stats(10, 4, 3, 1) == KVStats(tokens_computed=9, tokens_reused=4, blocks_held=13, peak_blocks=13)


def test_beam_kv_stats_holds_the_peak():
    assert beam_kv_stats(12, 7, 5) == KVStats(tokens_computed=12, tokens_reused=7, blocks_held=5, peak_blocks=5)


def test_finish_request_calls_both_hooks_and_returns_the_summary(pm):
    seen = []

    class Recorder:
        @hookimpl
        def ttc_kv_report(self, ctx, stats):
            seen.append(("kv", ctx.request_id, stats.tokens_computed))

        @hookimpl
        def ttc_request_finished(self, ctx, report):
            seen.append(("finished", report.finish_reason, report.output_token_ids))
            report.extra["mine"] = 1

    pm.register(Recorder(), "recorder")
    spec = ControlSpec.build("steering", [0], {"scale": 1.0})
    ctx = RequestContext("r", control=spec)
    summary = finish_request(pm, ctx, KVStats(3, 2, 1, 1), "stop", [4, 5])
    assert seen == [("kv", "r", 3), ("finished", "stop", (4, 5))]
    assert summary == {"control_key": spec.key, "mine": 1,
                       "kv": {"tokens_computed": 3, "tokens_reused": 2, "blocks_held": 1, "peak_blocks": 1}}


def test_beam_report_shape():
    report = beam_report([{"text": "a"}], {"tokens_computed": 1}, 0.5)
    assert report == {"beams": [{"text": "a"}], "kv": {"tokens_computed": 1}, "wall_time_s": 0.5}


def test_a_raising_report_hook_costs_the_request_nothing_but_is_reported(pm):
    finished = []

    class Broken:
        @hookimpl
        def ttc_kv_report(self, ctx, stats):
            raise KeyError("stats sink down")

        @hookimpl
        def ttc_request_finished(self, ctx, report):
            finished.append(report.request_id)

    pm.register(Broken(), name="broken")
    summary = finish_request(pm, RequestContext(request_id="r"), KVStats(tokens_computed=3), "stop", [1, 2, 3])
    assert finished == ["r"], "the other finishing hook still runs"
    assert summary["kv"]["tokens_computed"] == 3
    (error,) = summary["errors"]
    assert error.startswith("ttc-plugins: ttc_kv_report failed for this request: KeyError: 'stats sink down'")
