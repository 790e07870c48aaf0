"""The OpenAI server started the usual way (module form): vllm_xargs drive the plugin."""

from __future__ import annotations

import json

import pytest

from integration.common import scenarios

pytest.importorskip("openai")


@pytest.fixture(scope="module")
def client(server):
    import openai

    return openai.OpenAI(base_url=server["base_url"] + "/v1", api_key="none")


def _complete(client, model, prompt, ttc, max_tokens=scenarios.MAX_TOKENS):
    extra = {"return_token_ids": True, "ignore_eos": True}
    if ttc is not None:
        extra["vllm_xargs"] = {"ttc": json.dumps(ttc)}
    r = client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0.0, logprobs=0,
                                  extra_body=extra)
    choice = r.choices[0]
    return list(choice.token_ids), list(choice.logprobs.token_logprobs)


def test_vllm_xargs_control_and_decoding_over_http(client, tiny_model, reference):
    for i, ttc in [(1, scenarios.STEER_A), (3, scenarios.STEER_B), (4, scenarios.FORCE), (0, None)]:
        got = _complete(client, tiny_model, scenarios.PROMPTS[i], ttc)
        scenarios.assert_matches([got], reference([scenarios.PROMPTS[i]], [ttc], scenarios.MAX_TOKENS), f"http[{i}]")


def test_malformed_ttc_returns_400_and_server_keeps_serving(client, tiny_model, server):
    import openai

    bad = {"control": {"name": "steering", "layers": [1], "vector": [1.0] * 128, "scale": "big"}}
    with pytest.raises(openai.BadRequestError) as info:
        _complete(client, tiny_model, scenarios.PROMPTS[0], bad)
    assert info.value.status_code == 400
    assert "ttc.control.scale" in str(info.value)
    with pytest.raises(openai.BadRequestError, match=r"ttc\.bogus"):
        _complete(client, tiny_model, scenarios.PROMPTS[0], {"bogus": 1})
    got = _complete(client, tiny_model, scenarios.PROMPTS[1], None, 4)
    assert len(got[0]) == 4
