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


@pytest.mark.parametrize("beam,field", [({"width": 0}, "ttc.beam.width"), ({"width": 99}, "ttc.beam.width"),
                                        ({"width": 2, "early_stopping": 3}, "ttc.beam.early_stopping")])
def test_bad_token_beam_returns_400_naming_the_field(client, tiny_model, beam, field):
    import openai

    with pytest.raises(openai.BadRequestError, match=field.replace(".", r"\.")) as info:
        client.completions.create(model=tiny_model, prompt="x = 1", max_tokens=4,
                                  extra_body={"vllm_xargs": {"ttc": json.dumps({"beam": beam})}})
    assert info.value.status_code == 400
    ok = client.completions.create(model=tiny_model, prompt="x = 1", max_tokens=4,
                                   extra_body={"vllm_xargs": {"ttc": json.dumps({"beam": {"width": 2}})}})
    assert ok.choices[0].text is not None and ok.model_extra["ttc"]["beam"]["beams"]


@pytest.mark.parametrize("raw,field", [
    ('{"x":' * 3000 + "1" + "}" * 3000, "ttc"),  # too deep for Python's json: a 400, never a 500
    ("null", "ttc"),  # "ttc": "null" is not "no ttc"
])
def test_bad_ttc_json_strings_are_400s(client, tiny_model, raw, field):
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=tiny_model, prompt=scenarios.PROMPTS[0], max_tokens=2,
                                  extra_body={"vllm_xargs": {"ttc": raw}})
    assert info.value.status_code == 400 and f"{field}:" in str(info.value)


def test_token_beam_cannot_be_streamed(client, tiny_model):
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=tiny_model, prompt="x = 1", max_tokens=4, stream=True,
                                  extra_body={"vllm_xargs": {"ttc": json.dumps({"beam": {"width": 2}})}})
    assert info.value.status_code == 400 and info.value.body["param"] == "stream"
