"""HeldState: the reference count behind in-place forks (ttc_plugins.kv.held)."""

from __future__ import annotations

import pytest

from ttc_plugins.kv.held import HeldState, release, retain


def test_the_last_release_frees_once():
    freed = []
    h = HeldState("k", freed.append, owner="engine")
    assert retain(h) is h and h.refs == 2
    release(h)
    assert freed == [] and h.live
    release(h)
    release(h)  # releasing a freed state again does nothing
    assert freed == ["k"] and not h.live and h.owner == "engine"
    with pytest.raises(RuntimeError, match="already released"):
        h.retain()
    assert retain(h) is None  # a child of a freed state gets nothing to fork from


def test_other_handles_are_shared_as_they_are():
    assert retain("engine-row-3") == "engine-row-3" and retain(None) is None
    release("engine-row-3")  # no lifetime: nothing happens


def test_a_search_step_hands_over_the_branch_reference():
    from ttc_plugins.manager import TTCPluginManager
    from ttc_plugins.search.base import SearchState
    from ttc_plugins.search.params import SearchParams
    from ttc_plugins.types import Branch, RequestContext, Step

    freed = []
    first, second = HeldState("a", freed.append), HeldState("b", freed.append)
    pm = TTCPluginManager(load_entrypoints=False)
    root = Branch("r", None, (1,))
    state = SearchState(pm=pm, ctx=RequestContext("r"), params=SearchParams(), root=root, prompt="",
                        scorer=None)
    b = Branch("r.0", "r", (1,), handle=first)
    state._apply(b, Step(branch_id="r.0", text="x", token_ids=(2,), handle=second))
    assert freed == ["a"] and b.handle is second
    state.release([b])
    assert freed == ["a", "b"]
