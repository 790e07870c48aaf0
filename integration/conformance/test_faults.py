"""A third-party plugin that raises inside the engine fails only the requests that use it, with a
clear error; the other requests of the same batch complete token-equal to a clean run, and the
engine keeps serving (``ttc_plugins.runtime.faults``).

The faults come from the test-only plugin ``integration/common/fixture_plugin`` (installed like
any third-party plugin, loaded through its entry point in every engine process): its ``fault``
decoder raises inside ``ttc_process_logits`` / ``ttc_accept_token`` / ``ttc_kv_report``, its
``fault`` control raises while planning or writes an infinite vector. Its ``reject_at`` decoder
exercises ``ttc_accept_token``'s rejection.
"""

from __future__ import annotations

import openai
import pytest

from integration.common import figures, scenarios
from integration.common.concurrent import run_at_once

pytest.importorskip("ttc_test_plugin", reason="the test-only plugin is not installed (nox installs it)")

MAX_TOKENS = 8
FAULT_MESSAGE = "fault injected by ttc_test_plugin"

FAULTS = {
    "process_logits": {"decoding": [{"name": "fault", "hook": "process_logits"}]},
    "process_logits_mid_request": {"decoding": [{"name": "fault", "hook": "process_logits", "after": 3}]},
    "accept_token": {"decoding": [{"name": "fault", "hook": "accept_token", "after": 2}]},
    "control_plan_raises": {"control": {"name": "fault", "mode": "raise", "layers": [1]}},
    "control_not_finite": {"control": {"name": "fault", "mode": "inf", "layers": [1]}},
}
#: requests sent at the same instant as the faulty one: (prompt index, ttc)
CLEAN = [(0, None), (1, scenarios.STEER_A), (4, scenarios.FORCE), (6, None)]


def _complete(engine_openai, prompt, ttc) -> tuple[int, str]:
    """(HTTP status, completion text or error message) of one greedy completion."""
    client, model, extra_body = engine_openai
    try:
        r = client.completions.create(model=model, prompt=prompt, max_tokens=MAX_TOKENS, temperature=0.0,
                                      extra_body=extra_body(ttc) if ttc is not None else None)
    except openai.APIStatusError as exc:
        return exc.status_code, str(exc)
    return 200, r.choices[0].text


@pytest.fixture(scope="module")
def clean_run(engine_openai):
    return [_complete(engine_openai, scenarios.PROMPTS[i], ttc) for i, ttc in CLEAN]


@pytest.fixture(scope="module")
def tally(engine_name):
    """The module's figures: faults injected, how each ended, what the requests beside them got."""
    counts = {"faults injected": 0, "failed alone with an error": 0, "requests beside them": 0,
              "requests beside them unchanged": 0}
    yield counts
    figures.write("faults", engine_name, counts)


def _count(tally, faulty_failed: bool, others, expected) -> None:
    tally["faults injected"] += 1
    tally["failed alone with an error"] += int(faulty_failed)
    tally["requests beside them"] += len(others)
    tally["requests beside them unchanged"] += sum(o == e for o, e in zip(others, expected))


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_raising_plugin_fails_only_its_request(engine_openai, engine_name, clean_run, tally, fault):
    calls = [lambda: _complete(engine_openai, scenarios.PROMPTS[2], FAULTS[fault])]
    calls += [lambda i=i, ttc=ttc: _complete(engine_openai, scenarios.PROMPTS[i], ttc) for i, ttc in CLEAN]
    faulty, *others = run_at_once(calls, timeout_s=120)
    _count(tally, faulty[0] == 500, others, clean_run)
    assert faulty[0] == 500, faulty
    if engine_name == "sglang":  # vLLM answers a request that finished with "error" with a generic 500
        assert FAULT_MESSAGE in faulty[1] or "not finite" in faulty[1], faulty
    assert others == clean_run, "the other requests of the batch changed"


def test_after_the_faults_the_engine_serves_the_same_tokens(engine_openai, clean_run):
    assert [_complete(engine_openai, scenarios.PROMPTS[i], ttc) for i, ttc in CLEAN] == clean_run


def test_a_raising_report_hook_keeps_the_answer_and_reports_the_error(engine_generate_served, tally):
    faulty = {"decoding": [{"name": "fault", "hook": "kv_report"}]}
    (tokens, _, report, _), (clean_tokens, _, clean_report, _) = engine_generate_served(
        [scenarios.PROMPTS[3]] * 2, [faulty, {}], MAX_TOKENS)
    _count(tally, bool(report.get("errors")), [clean_tokens], [tokens])
    assert tokens == clean_tokens and len(tokens) == MAX_TOKENS
    assert any("ttc_kv_report" in e and FAULT_MESSAGE in e for e in report["errors"]), report
    assert "errors" not in clean_report and report["kv"] == clean_report["kv"]


def test_a_rejected_token_ends_only_its_request(engine_generate_served, engine_name, engine_eos):
    """``ttc_accept_token`` returning False: the request ends at that token (SGLang: finish reason
    ``rejected``; vLLM, where a logits processor cannot finish a request: the row samples only EOS
    from then on, which ends it unless it set ``ignore_eos``, as the suite's requests do). The
    plain request beside it runs on."""
    rejecting = {"decoding": [{"name": "reject_at", "position": 2}]}
    (rejected, _, _, _), (plain, _, _, _) = engine_generate_served([scenarios.PROMPTS[6]] * 2, [rejecting, None], 6)
    assert len(plain) == 6
    assert rejected[:3] == plain[:3]
    if engine_name == "vllm":
        assert rejected[3:] == [engine_eos] * 3
    else:
        assert rejected[3:] == []


SEARCH = {"strategy": "best_of_n", "width": 2, "max_steps": 2, "max_step_tokens": 4, "max_total_tokens": 8,
          "step_delimiter": "\n", "temperature": 0.0}
SEARCH_PROMPT = "Problem: 3 + 4 = ?\nSolution:\n"


def _search(engine_search_openai, search) -> tuple[int, str]:
    client, model, extra_body = engine_search_openai
    try:
        r = client.completions.create(model=model, prompt=SEARCH_PROMPT, extra_body=extra_body({"search": search}))
    except openai.APIStatusError as exc:
        return exc.status_code, str(exc)
    return 200, r.choices[0].text


@pytest.mark.parametrize("fault", [{"strategy": "fault"}, {"scorer": "fault"}], ids=["strategy", "scorer"])
def test_a_raising_strategy_or_scorer_fails_only_its_search(engine_search_openai, tally, fault):
    clean = _search(engine_search_openai, SEARCH)
    assert clean[0] == 200, clean
    faulty, *others = run_at_once([lambda: _search(engine_search_openai, {**SEARCH, **fault})]
                                  + [lambda: _search(engine_search_openai, SEARCH)] * 2, timeout_s=180)
    _count(tally, faulty[0] == 500, others, [clean, clean])
    assert faulty[0] == 500 and f"search failed: RuntimeError: {FAULT_MESSAGE}" in faulty[1], faulty
    assert others == [clean, clean]
