"""How a served search reaches vLLM under data parallelism, without an engine: every request of a
search goes to one DP rank (searches take the ranks in turn), and the release of a held branch goes
straight to that rank's engine core (vLLM's balancer drops an abort of a request it no longer
tracks, which left held KV behind)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from ttc_plugins.vllm_backend.search_ops import AsyncVLLMEngineOps


class _BalancedCore:
    """The parts of vLLM's in-server DP balancer (``DPLBAsyncMPClient``) the ops use."""

    def __init__(self, ranks: int):
        self.core_engines = [f"engine-{i}".encode() for i in range(ranks)]
        self.reqs_in_flight: dict = {}
        self.sent: list = []

    async def _abort_requests(self, ids, engine):
        self.sent.append((list(ids), engine))

    async def abort_requests_async(self, ids):
        self.sent.append((list(ids), "balanced"))


class _OneCore:
    def __init__(self):
        self.sent: list = []

    async def abort_requests_async(self, ids):
        self.sent.append((list(ids), "balanced"))


def _ops(core, loop=None) -> AsyncVLLMEngineOps:
    ops = object.__new__(AsyncVLLMEngineOps)  # no engine: only the routing state
    ops.client = SimpleNamespace(engine_core=core)
    ops.loop = loop
    ops._release_tasks = set()
    ops._init_dp_rank(core)
    return ops


def test_searches_take_the_dp_ranks_in_turn():
    core = _BalancedCore(2)
    ranks = [_ops(core).dp_rank for _ in range(4)]
    assert set(ranks) == {0, 1}
    assert ranks[0] != ranks[1] and ranks[:2] == ranks[2:]


def test_one_core_or_a_balancer_outside_the_server_pins_nothing():
    assert _ops(_OneCore()).dp_rank is None
    assert _ops(_BalancedCore(1)).dp_rank is None
    # one core per server (an external balancer): a client without in-server balancing
    assert _ops(SimpleNamespace(core_engines=[b"a", b"b"])).dp_rank is None


def _release(core) -> list:
    async def go():
        ops = _ops(core, asyncio.get_running_loop())
        ops._release_held("ttc-held-7")
        await asyncio.gather(*ops._release_tasks)
        return ops

    ops = asyncio.run(go())
    return core.sent, ops


def test_a_release_goes_to_the_core_of_the_searchs_rank():
    core = _BalancedCore(2)
    sent, ops = _release(core)
    assert sent == [(["ttc-held-7"], core.core_engines[ops.dp_rank])]


def test_with_one_core_a_release_is_an_ordinary_abort():
    sent, _ = _release(_OneCore())
    assert sent == [(["ttc-held-7"], "balanced")]
