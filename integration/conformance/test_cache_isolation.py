"""Prefix-cache isolation per control, and what each request reports reused, on every engine:
KV computed under one control is never served to another (nor to a plain request), while
requests with the same control (or none) share their own prefixes."""

from __future__ import annotations

import uuid

from integration.common import scenarios

LONG = scenarios.LONG_PROMPT
N = 4


def test_a_control_never_reuses_another_controls_prefix_and_reports_what_it_reused(engine_generate_served,
                                                                                   reference):
    salt = f"isolation-{uuid.uuid4().hex}"  # this test's own cache namespace (requests before it cached LONG)

    def served(ttc):
        (row,) = engine_generate_served([LONG], [ttc], N, cache_salt=salt)
        return row

    plain_ref, steered_ref = reference([LONG], [None], N), reference([LONG], [scenarios.LONG_STEER], N)
    scenarios.assert_steering_changes_output(steered_ref, plain_ref, "reference")
    first = served(None)
    steered = served(scenarios.LONG_STEER)
    plain = served(None)
    steered_again = served(scenarios.LONG_STEER)
    other = served(scenarios.STEER_A_NORM)
    scenarios.assert_matches([first[:2], plain[:2]], plain_ref * 2, "plain")
    scenarios.assert_matches([steered[:2], steered_again[:2]], steered_ref * 2, "steered after plain")
    # a control's request reuses nothing computed without it, and says so
    assert steered[3] == 0 and steered[2]["kv"]["tokens_reused"] == 0, steered[2:]
    assert other[3] == 0 and other[2]["kv"]["tokens_reused"] == 0, other[2:]
    # plain requests and same-control requests share their own prefix (most of the prompt)
    assert plain[3] >= len(LONG) // 2 and plain[2] is None
    assert steered_again[3] >= len(LONG) // 2 and steered_again[2]["kv"]["tokens_reused"] == steered_again[3]
    kv = steered_again[2]["kv"]
    assert kv["tokens_computed"] == len(LONG) - kv["tokens_reused"] + N
    assert steered[2]["control_key"] == steered_again[2]["control_key"] != other[2]["control_key"]
