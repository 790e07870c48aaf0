"""continuation_seed: the per-continuation seed every backend derives the same way."""

from __future__ import annotations

from ttc_plugins.search.seeds import continuation_seed


def test_the_derivation_is_pinned():
    # Every backend seeds with these values; a change here changes every seeded search result and
    # breaks the agreement the engine suites check (HFEngineOps vs vLLM / SGLang).
    assert continuation_seed(0, "r.0", 0) == 845383472188250691
    assert continuation_seed(0, "r.0", 1) == 1117401296348232168
    assert continuation_seed(3, "r.0@1", 2) == 1531650333367744925


def test_seeds_differ_per_seed_branch_and_index_and_fit_int64():
    seeds = {continuation_seed(s, b, i) for s in (0, 1) for b in ("a", "b", "a.0") for i in range(4)}
    assert len(seeds) == 2 * 3 * 4
    assert all(0 <= x < 2**63 for x in seeds)
