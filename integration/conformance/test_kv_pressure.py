"""KV pressure: searches (with their held step branches) and wide token beams, sent together to a
server whose KV pool is small, degrade (fewer in-place forks, preemption and recompute) without
errors and without changing an answer: each one equals the same request on the suite's
roomy server, run alone."""

from __future__ import annotations

from integration.common import scenarios
from integration.common.concurrent import run_at_once

PROMPT = "Problem: 3 + 4 = ?\nSolution:\n"
SEARCH = {"strategy": "beam", "width": 4, "expand": 2, "max_steps": 4, "max_step_tokens": 12,
          "max_total_tokens": 48, "step_delimiter": "\n", "temperature": 0.0}
BEAM_TOKENS = 100


def _ask(openai_fixture, kind: str, i: int) -> str:
    client, model, extra_body = openai_fixture
    if kind == "search":
        r = client.completions.create(model=model, prompt=PROMPT + "x" * i, temperature=0.0,
                                      extra_body=extra_body({"search": SEARCH}))
    else:  # a width-4 beam over 100 tokens: 4 x (prompt + 100) tokens of KV for one request
        r = client.completions.create(model=model, prompt=scenarios.PROMPTS[i], max_tokens=BEAM_TOKENS,
                                      temperature=0.0, extra_body={**extra_body({"beam": {"width": 4}}),
                                                                   "ignore_eos": True})
    return r.choices[0].text


def test_searches_and_beams_under_a_small_kv_pool_give_the_same_answers(engine_small_kv_openai, engine_search_openai):
    work = [("search", i) for i in range(4)] + [("beam", i) for i in range(4)]
    alone = [_ask(engine_search_openai, kind, i) for kind, i in work]
    together = run_at_once([lambda kind=kind, i=i: _ask(engine_small_kv_openai, kind, i) for kind, i in work],
                           timeout_s=600)
    assert together == alone
