"""Search requests on SGLang's own OpenAI server (``sglang_backend.patches.frontend_serve_search``):
``/v1/completions`` and ``/v1/chat/completions`` requests with ``custom_params.ttc.search`` run the
search inside the HTTP server process against its TokenizerManager and answer the chosen path plus
the report under ``ttc``.

The suite's ``server`` (tiny Llama, float32, torch_native) and its in-process ``engine`` run the same
model with the same settings; greedy searches (SGLang ignores per-request seeds on CPU) must find
the same path over HTTP as ``run_search`` in Python. Searches scored by ``prm`` use the tiny PRM on
its own SGLang server (``prm_server``, embedding mode), named in the server's ``TTC_SGLANG_CONFIG``;
their step scores must be the HF forward of the same PRM weights.
"""

from __future__ import annotations

import json

import openai
import pytest
import requests

from ttc_plugins.scoring.prm import prm_text
from ttc_plugins.search import SearchPrompt, run_search
from ttc_plugins.sglang_backend.reward_model import SGLangRewardModel
from ttc_plugins.sglang_backend.search_ops import SGLangEngineOps
from ttc_plugins.testing.memory_prm import MemoryRewardModel

from integration.common.concurrent import run_at_once

PROMPT = "Problem: 3 + 4 = ?\nSolution:\n"
SEARCH = {"strategy": "beam", "width": 2, "expand": 2, "max_steps": 3, "max_step_tokens": 6,
          "max_total_tokens": 18, "step_delimiter": "\n", "temperature": 0.0}
MESSAGES = [{"role": "system", "content": "Solve step by step."}, {"role": "user", "content": "3 + 4 = ?"}]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=180)


@pytest.fixture(scope="module")
def model(client) -> str:
    return client.models.list().data[0].id


def _search(client, model, search, prompt=PROMPT, **kw):
    resp = client.completions.create(model=model, prompt=prompt,
                                     extra_body={"custom_params": {"ttc": {"search": search}}}, **kw)
    return resp, resp.model_extra["ttc"]["search"]


def _chat_search(client, model, search, messages=MESSAGES, **kw):
    resp = client.chat.completions.create(model=model, messages=messages,
                                          extra_body={"custom_params": {"ttc": {"search": search}}}, **kw)
    return resp, resp.model_extra["ttc"]["search"]


@pytest.fixture(scope="module")
def first(client, model):
    return _search(client, model, SEARCH)


def test_completion_search_runs_in_the_server_and_matches_python(first, engine):
    resp, rep = first
    (choice,) = resp.choices
    assert rep["strategy"] == "beam" and rep["chosen_branch_id"] is not None
    assert choice.text == rep["text"] == "".join(rep["chosen_path"]) and choice.text
    assert len(rep["chosen_path"]) == len(rep["scores"]) <= SEARCH["max_steps"]
    c, eng = rep["counters"], rep["engine"]
    assert c["model_calls"] == eng["sequences"] > 0  # every sequence the search ran was this request's
    assert c["tokens_reused"] == eng["kv"]["tokens_reused"] > 0  # radix hits on the shared prefix
    assert resp.usage.completion_tokens == c["tokens_generated"] > 0
    (local,) = run_search(SGLangEngineOps(engine, seeded=False), [SearchPrompt(text=PROMPT, request_id="py")], SEARCH)
    assert local.chosen_path == rep["chosen_path"]
    assert local.scores == pytest.approx(rep["scores"], rel=1e-4, abs=1e-6)


def test_chat_search_runs_on_the_chat_templated_prompt(client, model, engine):
    resp, rep = _chat_search(client, model, SEARCH)
    (choice,) = resp.choices
    assert resp.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.message.content == rep["text"] == "".join(rep["chosen_path"]) and rep["text"]
    tok = engine.tokenizer_manager.tokenizer
    templated = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    (local,) = run_search(SGLangEngineOps(engine, seeded=False), [SearchPrompt(text=templated, request_id="py-chat")],
                          SEARCH)
    assert local.chosen_path == rep["chosen_path"]
    assert resp.usage.prompt_tokens == len(tok(templated, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("search, field", [
    ({**SEARCH, "strategy": "no_such_strategy"}, "ttc.search.strategy"),
    ({**SEARCH, "width": 0}, "ttc.search.width"),
    ({**SEARCH, "scorer": "no_such_scorer"}, "ttc.search.scorer"),
    ({**SEARCH, "scorer": "prm", "scorer_args": {"model": "judge"}}, "ttc.search.scorer_args.model"),
    ({**{k: v for k, v in SEARCH.items() if k != "expand"}, "strategy": "ets", "embedder": "no_such_embedder"},
     "ttc.search.embedder"),
    ({**SEARCH, "width": "4"}, "ttc.search.width"),  # strict: no string-to-int coercion
])
@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_bad_search_settings_are_400_naming_the_field_and_the_server_keeps_serving(client, model, server,
                                                                                  search, field, endpoint):
    call = _search if endpoint == "completions" else _chat_search
    with pytest.raises(openai.BadRequestError) as err:
        call(client, model, search)
    assert err.value.status_code == 400
    assert err.value.body["param"] == field and field in err.value.body["message"]
    resp, rep = call(client, model, {**SEARCH, "max_steps": 1})
    assert rep["chosen_branch_id"] is not None
    assert requests.get(f"{server}/health", timeout=10).status_code == 200


def test_request_features_a_search_cannot_honour_are_400(client, model):
    for call, kw, field in ((_search, {"stream": True}, "stream"), (_search, {"n": 2}, "n"),
                            (_search, {"echo": True}, "echo"), (_chat_search, {"stream": True}, "stream"),
                            (_chat_search, {"logprobs": True}, "logprobs")):
        with pytest.raises(openai.BadRequestError) as err:
            call(client, model, SEARCH, **kw)
        assert err.value.body["param"] == field, (kw, err.value.body)


def test_ttc_as_a_json_string_and_plain_requests_are_unaffected(client, model, first):
    resp = client.completions.create(model=model, prompt=PROMPT,
                                     extra_body={"custom_params": {"ttc": json.dumps({"search": SEARCH})}})
    assert resp.model_extra["ttc"]["search"]["chosen_path"] == first[1]["chosen_path"]
    plain = client.completions.create(model=model, prompt=PROMPT, max_tokens=6, temperature=0)
    assert plain.model_extra.get("ttc") is None and plain.usage.completion_tokens == 6


def test_concurrent_searches_from_several_clients(server, model, first):
    clients = [openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=240) for _ in range(3)]
    calls = [lambda c: _search(c, model, SEARCH),
             lambda c: _chat_search(c, model, SEARCH),
             lambda c: _search(c, model, {**{k: v for k, v in SEARCH.items() if k != "expand"},
                                          "strategy": "best_of_n", "width": 3}, "Problem: 9 * 9 = ?\n")]
    out = run_at_once([lambda i=i: calls[i](clients[i]) for i in range(3)], timeout_s=300)
    assert out[0][1]["chosen_path"] == first[1]["chosen_path"]  # greedy: other clients do not matter
    assert out[1][0].choices[0].message.content == out[1][1]["text"] and out[1][1]["text"]
    assert out[2][1]["strategy"] == "best_of_n" and out[2][0].choices[0].text == out[2][1]["text"]


# -- the engine-served PRM as the scorer -------------------------------------------------------
# sampled (temperature 1): the candidates differ, so the PRM has something to choose between
PRM_SEARCH = {**SEARCH, "temperature": 1.0, "scorer": "prm", "scorer_args": {"model": "prm"}, "aggregation": "min"}


def _hf_step_rewards(prm_dir: str, prompt: str, path: list[str]) -> list[float]:
    hf = MemoryRewardModel.from_pretrained(prm_dir)  # HF transformers on the same weights
    (rewards,) = hf.step_rewards([prm_text(prompt, path, hf.step_tag)])
    return rewards


def test_python_search_with_the_prm_over_http_matches_hf(engine, prm_server, prm_dir):
    rm = SGLangRewardModel.over_http(prm_server, prm_dir)
    texts = [prm_text(PROMPT, ["3 + 4 = 7", "so 7"], rm.step_tag), prm_text("Q:\n", ["one"], rm.step_tag)]
    hf = MemoryRewardModel.from_pretrained(prm_dir)
    got, want = rm.step_rewards(texts), hf.step_rewards(texts)
    assert [len(r) for r in got] == [2, 1]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=1e-4)
    ops = SGLangEngineOps(engine, seeded=False, reward_models={"prm": rm})
    (res,) = run_search(ops, [SearchPrompt(text=PROMPT, request_id="py-prm")], PRM_SEARCH)
    assert res.scores == pytest.approx(_hf_step_rewards(prm_dir, PROMPT, res.chosen_path), abs=1e-4)


def test_a_nan_in_the_search_is_a_400_saying_finite(client, model):
    # NaN is not JSON: a client sends it inside the ttc section's JSON text
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=model, prompt=PROMPT, extra_body={
            "custom_params": {"ttc": json.dumps({"search": {**SEARCH, "temperature": float("nan")}})}})
    assert err.value.body["param"] == "ttc.search.temperature" and "finite" in err.value.body["message"]


def test_explicit_max_tokens_caps_the_answer_and_a_prompt_past_the_context_is_a_400(client, model, tiny_model):
    from integration.common.bad_requests import check_search_request_limits

    check_search_request_limits(lambda s, **kw: _search(client, model, s, **kw), SEARCH)


# -- fuzzed requests (issue: reliability under bad input) --------------------------------------
def test_fuzzed_ttc_sections_get_a_2xx_or_a_400_naming_the_field_and_never_hurt_the_server(client, model, server):
    import os

    from ttc_plugins.testing import fuzz

    def search_ok():
        assert _search(client, model, {**SEARCH, "max_steps": 1})[1]["chosen_branch_id"] is not None
        assert requests.get(f"{server}/health", timeout=10).status_code == 200

    tally = fuzz.run("sglang", server, model,
                     lambda section: {"custom_params": {"ttc": fuzz.as_json_text_if_needed(section)}}, search_ok,
                     os.environ.get("TTC_RELIABILITY_OUT"))
    assert tally.server_errors == tally.timeouts == 0 and not tally.unnamed
