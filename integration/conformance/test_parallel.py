"""More ranks inside one engine: the search-serving server with tensor parallelism 2 and with data
parallelism 2 (the engine's own flags) answers every request kind as one rank does, on every
engine whose CPU build runs the mode (a mode it cannot run is skipped with the engine's own error).

- controls (steering in every TP rank), decoders and the TTC layer: the HF reference's tokens;
- token beams: the HF reference's beams;
- searches, greedy and PRM-scored: the one-rank server's answer, with their rounds kept on one DP
  rank (a child finds its held parent, a release reaches the rank that holds it: no KV left held).
"""

from __future__ import annotations

import pytest

from integration.common import scenarios
from integration.common.scenarios import ttc_layer
from integration.common.server import settled_kv

N = scenarios.MAX_TOKENS
#: (prompt index, ttc): requests with an HF reference
REFERENCED = [(0, None), (1, scenarios.STEER_A), (4, scenarios.FORCE), (5, scenarios.STEER_AND_BAN),
              (2, ttc_layer(8)), (3, ttc_layer(24, scale=2.0))]
PROMPT = "Problem: 3 + 4 = ?\nSolution:\n"
GREEDY_SEARCH = {"strategy": "beam", "width": 2, "expand": 2, "max_steps": 3, "max_step_tokens": 6,
                 "max_total_tokens": 18, "step_delimiter": "\n", "temperature": 0.0}
PRM_SEARCH = {**GREEDY_SEARCH, "scorer": "prm", "scorer_args": {"model": "prm"},
              "aggregation": "min"}


def _search(target, search: dict) -> dict:
    client, model, extra_body = target
    return client.completions.create(model=model, prompt=PROMPT, extra_body=extra_body({"search": search})
                                     ).model_extra["ttc"]["search"]


@pytest.mark.parametrize("mode", ["tp2", "dp2"])
def test_every_request_kind_answers_as_on_one_rank(engine_parallel, engine_search_openai, engine_eos, hf,
                                                   reference, mode):
    par = engine_parallel(mode)  # skips, naming the engine's error, where its CPU build cannot run the mode
    for i, ttc in REFERENCED:
        got = par.serve(scenarios.PROMPTS[i], ttc, N)
        scenarios.assert_matches([got], reference([scenarios.PROMPTS[i]], [ttc], N), f"{mode} {ttc}")

    client, model, extra_body = par.openai
    prompt = scenarios.PROMPTS[2]
    r = client.completions.create(model=model, prompt=prompt, max_tokens=8, extra_body=extra_body({"beam": {"width": 3}}))
    beams = r.model_extra["ttc"]["beam"]["beams"]
    assert [b["token_ids"] for b in beams] == [ref[0] for ref in hf.beam_search(prompt, 3, 8, engine_eos)]

    for search in (GREEDY_SEARCH, PRM_SEARCH):
        for _ in range(2):  # twice: under data parallelism the second search runs on the other rank
            got, want = _search(par.openai, search), _search(engine_search_openai, search)
            assert got["chosen_path"] == want["chosen_path"], search.get("scorer")
            assert got["scores"] == pytest.approx(want["scores"], abs=1e-4)
    used, _ = settled_kv(par.kv_in_use, 0.0)
    assert used == 0.0, f"{mode}: KV still held after every request ended: {used}"
