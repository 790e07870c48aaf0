"""How a served search reaches SGLang under data parallelism, without an engine: every round of a
search carries one DP rank (``routed_dp_rank``), so its children find their parents' tokens in that
rank's radix cache; searches take the ranks in turn; with one rank nothing is added."""

from __future__ import annotations

from ttc_plugins.sglang_backend import search_ops


def _routing(dp_size: int, monkeypatch) -> dict:
    monkeypatch.setattr(search_ops, "_dp_rank_field", lambda: "routed_dp_rank")  # no sglang needed
    ops = object.__new__(search_ops.AsyncSGLangEngineOps)
    ops.routing = {}
    ops._pin_dp_rank(dp_size)
    return ops.routing


def test_searches_take_the_dp_ranks_in_turn(monkeypatch):
    ranks = [_routing(2, monkeypatch)["routed_dp_rank"] for _ in range(4)]
    assert set(ranks) == {0, 1} and ranks[0] != ranks[1] and ranks[:2] == ranks[2:]


def test_one_rank_adds_nothing_to_the_request(monkeypatch):
    assert _routing(1, monkeypatch) == {}
