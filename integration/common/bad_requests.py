"""Bad ``ttc`` sections every engine's OpenAI server must answer with a 400 naming the field, while
it keeps serving (and serving the same tokens). One table for both engines; the engine suites only
say how a section travels (vLLM: a JSON string in ``vllm_xargs.ttc``; SGLang: an object in
``custom_params.ttc``).

The first rows once killed or poisoned a vLLM server (issue "Reliability under bad input"): a forced
token past the vocabulary raised inside the engine core's logits processor (the engine died), and a
finite but huge steering vector overflowed the residual stream, whose NaN KV then turned every later
short plain request into ``[0, 0, ...]``.
"""

from __future__ import annotations

from typing import Any

from ttc_plugins.testing.tiny_model import TINY_VOCAB as VOCAB

from . import scenarios


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    root = node
    for _ in range(depth - 1):
        node["x"] = {}
        node = node["x"]
    return root


#: (case id, the ttc section, the field the 400 must name)
BAD_TTC: list[tuple[str, Any, str]] = [
    ("force_token_far_past_vocab", {"decoding": [{"name": "force_token", "token_id": 1_000_000_000, "max_forced": 2}]},
     "ttc.decoding.0.token_id"),
    ("force_token_one_past_vocab", {"decoding": [{"name": "force_token", "token_id": VOCAB, "max_forced": 2}]},
     "ttc.decoding.0.token_id"),
    ("ban_tokens_past_vocab", {"decoding": [{"name": "ban_tokens", "token_ids": [5, VOCAB + 7]}]},
     "ttc.decoding.0.token_ids"),
    ("steering_huge_vector", {"control": {"name": "steering", "layers": [1], "vector": [1e308] * scenarios.HIDDEN,
                                          "scale": 4.0}}, "ttc.control.vector"),
    ("steering_huge_scale", {"control": {"name": "steering", "layers": [1], "vector": [1.0] * scenarios.HIDDEN,
                                         "scale": 1e12}}, "ttc.control.scale"),
    ("deep_nesting", {"decoding": [{"name": "ban_tokens", "token_ids": [1], "x": nested(100)}]}, "ttc"),
    ("string_for_int", {"decoding": [{"name": "force_token", "token_id": "42"}]}, "ttc.decoding.0.token_id"),
    ("decoding_not_a_list", {"decoding": {"name": "force_token", "token_id": 42}}, "ttc.decoding"),
    ("search_null", {"search": None}, "ttc.search"),
    ("control_null", {"control": None}, "ttc.control"),
    ("unknown_section", {"bogus": 1}, "ttc.bogus"),
]
BAD_IDS = [case for case, _, _ in BAD_TTC]


def check_search_request_limits(search, params: dict[str, Any]) -> None:
    """A served search honours the request around it: an explicit ``max_tokens`` caps the answer
    (every path is cut), and a prompt longer than the server's context is a 400 naming ``prompt``.
    ``search(params, **request_fields) -> (response, report)`` runs one on the engine's server."""
    import openai
    import pytest

    resp, rep = search(params, max_tokens=4)
    assert rep["settings"]["max_total_tokens"] == 4 and params.get("max_total_tokens", 1024) > 4
    # every path ends at the cap (none of the tiny model's paths ends sooner)
    assert resp.choices[0].finish_reason == "length"
    assert {c["finish_reason"] for c in rep["candidates"]} == {"length"}, rep["candidates"]
    uncapped, uncapped_rep = search(params)
    assert uncapped_rep["settings"]["max_total_tokens"] == params.get("max_total_tokens", 1024)
    with pytest.raises(openai.BadRequestError) as err:
        search(params, prompt="x " * 20000)
    assert err.value.status_code == 400 and err.value.body["param"] == "prompt"
