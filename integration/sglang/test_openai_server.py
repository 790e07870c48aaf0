"""``python -m sglang.launch_server`` + the OpenAI client (and the native /generate endpoint).

The server runs WITH ``--enable-custom-logit-processor``: the pickle test proves that the plugin
itself refuses the payload, not only SGLang's default configuration.
"""

from __future__ import annotations

import json

import openai
import pytest
import requests
import ttc_sglang_engine as helpers
from test_security import pickle_payload

from integration.common import scenarios


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=120)


def _model(client) -> str:
    return client.models.list().data[0].id


def test_openai_completion_with_a_decoder_and_a_control(client, server, reference):
    model = _model(client)
    forced = client.completions.create(model=model, prompt=scenarios.PROMPTS[1], max_tokens=4, temperature=0,
                                       extra_body={"custom_params": {"ttc": scenarios.FORCE}})
    tok_text = requests.post(f"{server}/generate", json={"input_ids": scenarios.PROMPTS[1],
                                                         "sampling_params": helpers.sampling(scenarios.FORCE, 4)}).json()
    assert tok_text["output_ids"] == [42, 42, 42, 42]
    assert forced.choices[0].text == tok_text["text"]
    # steering through the native endpoint: tokens match the HF reference
    body = {"input_ids": scenarios.PROMPTS[2], "sampling_params": helpers.sampling(scenarios.STEER_B, 5),
            "return_logprob": True}
    out = requests.post(f"{server}/generate", json=body).json()
    scenarios.assert_matches(helpers.rows([out]), reference([scenarios.PROMPTS[2]], [scenarios.STEER_B], 5), "http steered")


def test_openai_invalid_ttc_is_a_400_naming_the_field(client):
    with pytest.raises(openai.BadRequestError, match=r"ttc\.control\.name"):
        client.completions.create(model=_model(client), prompt="def f", max_tokens=2,
                                  extra_body={"custom_params": {"ttc": {"control": {"name": "nope"}}}})


def test_pickle_payload_over_http_is_rejected_and_server_keeps_serving(client, server, tmp_path):
    marker = tmp_path / "pwned-http"
    with pytest.raises(openai.BadRequestError, match="custom_logit_processor"):
        client.completions.create(model=_model(client), prompt="def f", max_tokens=2,
                                  extra_body={"custom_logit_processor": pickle_payload(marker)})
    r = requests.post(f"{server}/generate", json={"text": "def f", "sampling_params": {"max_new_tokens": 2},
                                                  "custom_logit_processor": pickle_payload(marker)})
    assert r.status_code == 400 and "custom_logit_processor" in r.text, r.text
    assert not marker.exists(), "the request's pickle was executed in the server"
    ok = client.completions.create(model=_model(client), prompt="def f", max_tokens=3, temperature=0)
    assert ok.choices[0].text is not None and ok.usage.completion_tokens == 3
    assert requests.get(f"{server}/health", timeout=10).status_code == 200
    json.dumps(ok.model_dump())


def test_ttc_null_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=_model(client), prompt=scenarios.PROMPTS[0], max_tokens=2,
                                  extra_body={"custom_params": {"ttc": None}})
    assert info.value.status_code == 400 and "ttc:" in str(info.value)
