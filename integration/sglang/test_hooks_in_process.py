"""The hook data types reach plugins: frontend hooks in this (main) process, worker relays.

With ``sgl.Engine`` the frontend (tokenizer manager) runs in the calling process, so a plugin
registered here on the process-wide manager receives ``ttc_kv_report`` / ``ttc_request_finished``.
"""

from __future__ import annotations

import pytest
import ttc_sglang_engine as helpers

from integration.common import scenarios
from ttc_plugins import hookimpl
from ttc_plugins.manager import get_plugin_manager
from ttc_plugins.types import KVStats, RequestContext, RequestReport


class Recorder:
    def __init__(self):
        self.kv: list[tuple[RequestContext, KVStats]] = []
        self.finished: list[tuple[RequestContext, RequestReport]] = []

    @hookimpl
    def ttc_kv_report(self, ctx, stats):
        self.kv.append((ctx, stats))

    @hookimpl
    def ttc_request_finished(self, ctx, report):
        self.finished.append((ctx, report))


@pytest.fixture
def recorder(engine):
    pm = get_plugin_manager()
    rec = Recorder()
    name = pm.register(rec, name="test-recorder")
    yield rec
    pm.unregister(name)


def test_kv_report_and_request_finished_for_session_branches(engine, recorder):
    sid = engine.open_session(capacity_of_str_len=4096)
    try:
        parent = engine.generate(input_ids=scenarios.PROMPTS[5], sampling_params=helpers.sampling(scenarios.STEER_A, 3),
                                 session_params={"id": sid})
        kids = [
            engine.generate(input_ids=[300 + k, 400 + k], sampling_params=helpers.sampling(scenarios.STEER_A, 3),
                            session_params={"id": sid, "rid": parent["meta_info"]["id"]})
            for k in range(2)
        ]
    finally:
        engine.close_session(sid)
    by_rid = {ctx.request_id: (ctx, stats) for ctx, stats in recorder.kv}
    for out in [parent, *kids]:
        ctx, stats = by_rid[out["meta_info"]["id"]]
        assert ctx.engine == "sglang" and ctx.control is not None and ctx.control.kind == "steering"
        assert stats.tokens_reused == out["meta_info"]["cached_tokens"]
    for kid in kids:
        # each branch reuses the parent's prompt and output from the radix tree
        assert by_rid[kid["meta_info"]["id"]][1].tokens_reused >= len(scenarios.PROMPTS[5]) + 2
    reports = {r.request_id: r for _, r in recorder.finished}
    assert reports[parent["meta_info"]["id"]].finish_reason == "length"
    assert list(reports[parent["meta_info"]["id"]].output_token_ids) == parent["output_ids"]


def test_plain_requests_call_no_hooks(engine, recorder):
    helpers.generate_raw(engine, [scenarios.PROMPTS[0]], [None], 2, cache_salt="hooks-plain")
    assert recorder.kv == [] and recorder.finished == []
