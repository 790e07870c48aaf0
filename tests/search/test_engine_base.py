"""``EngineOpsBase``'s KV accounting: the engine's blocks in use, integrated over time."""

from __future__ import annotations

import pytest

from ttc_plugins.search import engine_base
from ttc_plugins.search.engine_base import EngineOpsBase


class _Ops(EngineOpsBase):
    def __init__(self):
        self._init_base(None, embedder=lambda texts: [], pm=None, add_bos=False)


def test_block_seconds_integrate_each_reading_until_the_next(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(engine_base.time, "perf_counter", lambda: now[0])
    ops = _Ops()
    ops._observe_blocks(4)  # t=100: 4 blocks
    now[0] = 102.0
    ops._observe_blocks(10)  # 4 blocks held for 2 s
    now[0] = 102.5
    ops._observe_blocks(2)  # 10 blocks for 0.5 s
    now[0] = 105.5
    stats = ops.kv_stats()  # 2 blocks for the 3 s since the last reading
    assert stats.block_seconds == pytest.approx(4 * 2 + 10 * 0.5 + 2 * 3)
    assert stats.peak_blocks == 10 and stats.blocks_held == 2
    now[0] = 106.5
    assert ops.kv_stats().block_seconds == pytest.approx(19 + 2 * 1)  # reading it twice counts time once


def test_no_reading_no_block_seconds():
    assert _Ops().kv_stats().block_seconds == 0.0
