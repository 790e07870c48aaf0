"""Two replicas of the engine's search-serving server behind the engine's own router
(``vllm-router``, ``sglang-router``: nothing of ours routes), on every engine.

What keeps a search together: a served search (``ttc.search``) and a token beam (``ttc.beam``) are
ONE HTTP request each; every round, fork and held branch of it runs inside the server that request
reached, so any routing policy keeps it on one replica and its KV stays local. The router spreads
whole searches, never their rounds. These tests check that the ``ttc`` section reaches the engine
through the router untouched, that a search's rounds all run on one replica (each replica's own
counter of finished engine requests), and that concurrent searches keep both replicas busy.
"""

from __future__ import annotations

import openai
import pytest

from integration.common import bad_requests, scenarios
from integration.common.concurrent import run_at_once

SEARCH = {"strategy": "best_of_n", "width": 2, "max_steps": 2, "max_step_tokens": 4, "max_total_tokens": 8,
          "step_delimiter": "\n", "temperature": 0.0}
#: distinct problems (a router's cache-aware policy sends one prompt back where it saw it)
PROBLEMS = [f"Problem: {a} + {b} = ?\nSolution:\n" for a, b in [(3, 4), (12, 9), (7, 15), (21, 30), (8, 8),
                                                                  (44, 2), (5, 61), (17, 26)]]


def _complete(target, prompt, ttc, **kw):
    client, model, extra_body = target
    return client.completions.create(model=model, prompt=prompt, temperature=0.0,
                                     extra_body=extra_body(ttc) if ttc is not None else None, **kw)


def _deltas(before: list[int], after: list[int]) -> list[int]:
    return [a - b for a, b in zip(after, before)]


def test_plain_steered_decoded_and_beam_requests_through_the_router_equal_a_replicas_answer(engine_replicas):
    prompt = PROBLEMS[1]  # text: sglang-router 0.3.2 refuses a token-id prompt (422, "StringOrArray")
    answers = {}
    for name, ttc in [("plain", None), ("steered", scenarios.STEER_A), ("decoded", scenarios.FORCE),
                      ("beam", {"beam": {"width": 2}})]:
        via = _complete(engine_replicas.router, prompt, ttc, max_tokens=8)
        own = _complete(engine_replicas.replicas[0], prompt, ttc, max_tokens=8)
        assert via.choices[0].text == own.choices[0].text, name
        answers[name] = via.choices[0].text
    # the router passed each request's ttc section on: controls and decoders changed the answer,
    # and the beam report (the engine's, under ttc) came back whole
    assert answers["steered"] != answers["plain"] and answers["decoded"] != answers["plain"]
    assert via.model_extra["ttc"]["beam"]["beams"] == own.model_extra["ttc"]["beam"]["beams"]
    assert len(via.model_extra["ttc"]["beam"]["beams"]) == 2


def test_a_bad_ttc_section_through_the_router_is_the_engines_400_naming_the_field(engine_replicas):
    case, ttc, field = bad_requests.BAD_TTC[0]
    with pytest.raises(openai.BadRequestError) as info:
        _complete(engine_replicas.router, PROBLEMS[0], ttc, max_tokens=2)
    assert f"{field}:" in str(info.value), (case, str(info.value))
    # both replicas keep serving, the same tokens
    plain = [_complete(t, PROBLEMS[0], None, max_tokens=4).choices[0].text
             for t in (engine_replicas.router, *engine_replicas.replicas)]
    assert len(set(plain)) == 1


def test_a_served_search_runs_all_its_rounds_on_one_replica(engine_replicas):
    for prompt in PROBLEMS[:3]:
        before = engine_replicas.finished()
        resp = _complete(engine_replicas.router, prompt, {"search": SEARCH})
        report = resp.model_extra["ttc"]["search"]
        deltas = _deltas(before, engine_replicas.finished())
        assert resp.choices[0].text == report["text"] and report["chosen_branch_id"] is not None
        # every round ran where the request landed; the other replica saw nothing
        assert sorted(deltas)[0] == 0, deltas
        assert max(deltas) >= 2, deltas  # a best-of-2 of two steps: at least two engine requests


def test_concurrent_searches_through_the_router_keep_both_replicas_busy(engine_replicas):
    before = engine_replicas.finished()
    calls = [lambda p=p: _complete(engine_replicas.router, p, {"search": SEARCH}) for p in PROBLEMS]
    responses = run_at_once(calls, timeout_s=300)
    deltas = _deltas(before, engine_replicas.finished())
    assert all(r.model_extra["ttc"]["search"]["chosen_branch_id"] is not None for r in responses)
    assert all(d > 0 for d in deltas), f"the router sent every search to one replica: {deltas}"


@pytest.mark.parametrize("policy", ["round_robin", "random"])
def test_under_other_routing_policies_each_search_stays_on_one_replica(engine_replicas, policy):
    """The policy picks the replica of a whole search; none can split one (it is one request).
    Round robin alternates replicas between searches."""
    landed = []
    with engine_replicas.router_with(policy) as router:
        for prompt in PROBLEMS[:4]:
            before = engine_replicas.finished()
            resp = _complete(router, prompt, {"search": SEARCH})
            deltas = _deltas(before, engine_replicas.finished())
            assert resp.model_extra["ttc"]["search"]["chosen_branch_id"] is not None
            assert sorted(deltas)[0] == 0 and max(deltas) >= 2, (policy, deltas)
            landed.append(deltas.index(max(deltas)))
    if policy == "round_robin":
        assert set(landed) == {0, 1}, f"round robin sent every search to one replica: {landed}"
