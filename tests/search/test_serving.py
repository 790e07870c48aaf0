"""The engine-free part of served search (ttc_plugins/search/serving.py): which requests are
searches, what a search refuses (naming the field), and the report of a real search."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from ttc_plugins.errors import TTCParamError
from ttc_plugins.manager import TTCPluginManager
from ttc_plugins.search import run_search
from ttc_plugins.search import serving as served
from ttc_plugins.testing import build_tiny_llama
from ttc_plugins.testing.memory_engine import MemoryEngine

SEARCH = {"strategy": "beam", "width": 2, "expand": 2, "max_steps": 2, "max_step_tokens": 4, "step_delimiter": "\n"}


@pytest.fixture(scope="module")
def pm():
    return TTCPluginManager(load_entrypoints=False)


@pytest.mark.parametrize("raw", [None, {}, {"decoding": []}, json.dumps({"decoding": []}), 7])
def test_requests_without_a_search_are_not_searches(pm, raw):
    assert served.search_params_of(raw, pm.parse_params) is None


@pytest.mark.parametrize("raw", [{"search": SEARCH}, json.dumps({"search": SEARCH})])
def test_a_search_as_object_or_json_string_is_validated(pm, raw):
    params = served.search_params_of(raw, pm.parse_params)
    assert params.search.name == "beam" and params.search.args.width == 2


def test_an_invalid_search_names_the_field(pm):
    with pytest.raises(TTCParamError) as err:
        served.search_params_of({"search": {**SEARCH, "width": 0}}, pm.parse_params)
    assert err.value.field == "ttc.search.width"


def _request(**kw):
    base = dict(stream=False, n=1, echo=False, logprobs=None, tools=None)
    return SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize("kw, field", [
    ({"stream": True}, "stream"), ({"n": 3}, "n"), ({"echo": True}, "echo"), ({"logprobs": 2}, "logprobs"),
    ({"logprobs": True}, "logprobs"), ({"tools": [{"type": "function"}]}, "tools"),
    ({"use_beam_search": True}, "use_beam_search"), ({"best_of": 2}, "best_of"),
])
def test_features_a_search_cannot_honour_name_their_field(pm, kw, field):
    params = pm.parse_params({"search": SEARCH})
    assert served.unsupported_feature(_request(**kw), params)[0] == field
    assert served.unsupported_feature(_request(), params) is None
    steered = pm.parse_params({"search": SEARCH, "decoding": [{"name": "ban_tokens", "token_ids": [1]}]})
    assert served.unsupported_feature(_request(), steered)[0] == "ttc.decoding"


@pytest.mark.parametrize("prompt, field", [(["a", "b"], "prompt"), ([], "prompt"), ("", "prompt"), ([[1, 2]], "prompt")])
def test_a_search_takes_one_text_prompt(prompt, field):
    assert served.single_text_prompt(prompt) == (None, (field, served.single_text_prompt(prompt)[1][1]))
    assert served.single_text_prompt(["one"]) == ("one", None) and served.single_text_prompt("one") == ("one", None)


def test_report_of_a_real_search(pm):
    engine = MemoryEngine.from_pretrained(build_tiny_llama())
    (res,) = run_search(engine, ["Q: 1 + 1 =\n"], SEARCH, pm=pm)
    rep = served.report_of(res, engine, 16)
    assert rep["text"] == res.text and rep["engine"]["sequences"] == engine.sequences > 0
    assert rep["engine"]["kv"]["block_size"] == 16 and rep["engine"]["calls"]["extend"] >= 1
    assert served.finish_reason(res) in ("stop", "length")
