"""The engine's own server, started the usual way with the plugin: controls and decoders over
HTTP equal the HF reference, and the table of bad ``ttc`` sections gets 400s naming the field
while the server keeps serving the same tokens (tests run in file order)."""

from __future__ import annotations

import openai
import pytest

from integration.common import bad_requests, scenarios


def test_controls_and_decoders_over_http_match_the_reference(engine_serve, reference):
    for i, ttc in [(1, scenarios.STEER_A), (3, scenarios.STEER_B), (4, scenarios.FORCE), (0, None)]:
        got = engine_serve(scenarios.PROMPTS[i], ttc, scenarios.MAX_TOKENS)
        scenarios.assert_matches([got], reference([scenarios.PROMPTS[i]], [ttc], scenarios.MAX_TOKENS), f"http[{i}]")


def _bad_request(engine_openai, ttc) -> openai.BadRequestError:
    client, model, extra_body = engine_openai
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=model, prompt=scenarios.PROMPTS[0], max_tokens=2, extra_body=extra_body(ttc))
    assert info.value.status_code == 400
    return info.value


@pytest.mark.parametrize("case,ttc,field", bad_requests.BAD_TTC, ids=bad_requests.BAD_IDS)
def test_bad_ttc_is_a_400_naming_the_field(engine_openai, case, ttc, field):
    err = _bad_request(engine_openai, ttc)
    assert f"{field}:" in str(err), str(err)


def test_an_oracle_scorer_in_a_served_search_is_refused(engine_search_openai):
    """A gold-answer verifier (``integer_answer``) needs the problem's reference answer and a served
    prompt has none: a 400 naming the field, never a search that silently cannot score (#16)."""
    client, model, extra_body = engine_search_openai
    search = {"search": {"strategy": "best_of_n", "width": 2, "scorer": "integer_answer", "max_total_tokens": 4}}
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=model, prompt="What is 2 + 2?", max_tokens=4, extra_body=extra_body(search))
    assert info.value.status_code == 400
    assert "ttc.search.scorer:" in str(info.value) and "oracle" in str(info.value), str(info.value)


def test_ttc_layer_is_refused_on_a_server_hosting_no_adapter(engine_openai):
    """Applied where an adapter is hosted, refused (400) elsewhere: never accepted and ignored."""
    err = _bad_request(engine_openai, {"control": {"name": "ttc_layer", "layers": [1], "horizon": 4}})
    assert "ttc.control.layers:" in str(err) and "hosts no TTC adapter" in str(err), str(err)


def test_after_every_bad_request_plain_requests_get_the_same_tokens(engine_serve, reference):
    # runs after the bad-input tests above (file order): the server is alive and not poisoned (a
    # NaN KV cache once turned every short plain request into [0, 0, ...])
    for i in (0, 4, 7):
        got = engine_serve(scenarios.PROMPTS[i], None, scenarios.MAX_TOKENS)
        scenarios.assert_matches([got], reference([scenarios.PROMPTS[i]], [None], scenarios.MAX_TOKENS), f"plain[{i}]")
