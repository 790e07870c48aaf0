"""``ttc_accept_token`` relay of the worker (no engine: SGLang's finish-reason type is real, the
request is a minimal object with the attributes ``Req.update_finish_state`` leaves behind). End to
end on every engine: ``integration/conformance/test_faults.py``."""

from __future__ import annotations

import pytest

pytest.importorskip("sglang")

from ttc_plugins.sglang_backend.config import EngineConfig  # noqa: E402
from ttc_plugins.sglang_backend.worker import CTX_ATTR, WorkerState  # noqa: E402

from ttc_plugins import hookimpl  # noqa: E402
from ttc_plugins.manager import TTCPluginManager  # noqa: E402
from ttc_plugins.types import RequestContext  # noqa: E402


class _Req:
    def __init__(self, output_ids, ctx):
        self.output_ids = output_ids
        self.finished_reason = None
        setattr(self, CTX_ATTR, ctx)

    def finished(self):
        return self.finished_reason is not None


class RejectOdd:
    def __init__(self):
        self.calls = []

    @hookimpl
    def ttc_accept_token(self, ctx, token_id, position):
        self.calls.append((ctx.request_id, token_id, position))
        return token_id % 2 == 0


def test_rejected_token_finishes_the_request_with_reason_rejected(monkeypatch):
    monkeypatch.setenv("TTC_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = TTCPluginManager(load_entrypoints=False)
    plugin = RejectOdd()
    pm.register(plugin, name="reject-odd")
    state = WorkerState(pm, EngineConfig())
    ctx = RequestContext(request_id="r1", params=pm.parse_params({}), engine="sglang")
    req = _Req([4, 6], ctx)
    state.after_finish_check(req)
    assert req.finished_reason is None
    req.output_ids.append(7)
    state.after_finish_check(req)
    from sglang.srt.managers.schedule_batch import BaseFinishReason

    assert isinstance(req.finished_reason, BaseFinishReason)
    assert req.finished_reason.to_json() == {"type": "rejected", "matched": 7}
    assert plugin.calls == [("r1", 6, 1), ("r1", 7, 2)]
    state.after_finish_check(req)  # finished: not asked again
    assert len(plugin.calls) == 2


def test_requests_without_context_are_never_asked(monkeypatch):
    pm = TTCPluginManager(load_entrypoints=False)
    plugin = RejectOdd()
    pm.register(plugin, name="reject-odd")
    state = WorkerState(pm, EngineConfig())
    req = _Req([1], None)
    state.after_finish_check(req)
    assert plugin.calls == [] and req.finished_reason is None
