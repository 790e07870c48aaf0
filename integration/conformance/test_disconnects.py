"""A client that goes away mid-search, mid-beam or mid-stream: the server keeps serving, and every
branch, held step request and KV block of that request is released (checked from the engine's
own KV gauge: back to its idle level), on every engine. A search is cancelled when its client
leaves (the driver releases what it holds at once: ``ttc_plugins.search.driver.arun_search``)."""

from __future__ import annotations


import openai
import pytest

from integration.common import figures, scenarios
from integration.common.server import settled_kv

LONG_SEARCH = {"strategy": "beam", "width": 4, "expand": 2, "max_steps": 16, "max_step_tokens": 16,
               "max_total_tokens": 256, "step_delimiter": "\n", "temperature": 0.0}
PROMPT = "Problem: 3 + 4 = ?\nSolution:\n"


def _leave_early(engine_search_openai, kind: str) -> None:
    client, model, extra_body = engine_search_openai
    impatient = openai.OpenAI(base_url=str(client.base_url), api_key="none", max_retries=0, timeout=0.3)
    try:
        if kind == "stream":  # reads one chunk of a long streamed answer, then hangs up
            stream = impatient.completions.create(model=model, prompt=scenarios.PROMPTS[3], max_tokens=400,
                                                  temperature=0.0, stream=True, extra_body={"ignore_eos": True})
            next(iter(stream))
            stream.close()
            return
        if kind == "search":
            kw = dict(prompt=PROMPT, extra_body=extra_body({"search": LONG_SEARCH}))
        else:  # a wide beam over a long answer
            kw = dict(prompt=scenarios.PROMPTS[3], max_tokens=400,
                      extra_body={**extra_body({"beam": {"width": 4}}), "ignore_eos": True})
        with pytest.raises(openai.APITimeoutError):
            impatient.completions.create(model=model, temperature=0.0, **kw)
    finally:
        impatient.close()


@pytest.fixture(scope="module")
def released(engine_name):
    """Per kind of request: seconds from the client leaving until the engine's KV was back idle."""
    seconds: dict[str, float] = {}
    yield seconds
    figures.write("disconnects", engine_name, seconds)


@pytest.mark.parametrize("kind", ["search", "beam", "stream"])
def test_a_client_that_leaves_mid_request_leaves_no_kv_held(engine_search_openai, engine_search_kv_in_use, released,
                                                            kind):
    idle, _ = settled_kv(engine_search_kv_in_use, 0.0)
    _leave_early(engine_search_openai, kind)
    used, took = settled_kv(engine_search_kv_in_use, idle)
    released[kind] = round(took, 1) if used <= idle else None
    assert used <= idle, f"KV still held {took:.0f} s after the client left: {used} (idle {idle})"
    client, model, _ = engine_search_openai
    r = client.completions.create(model=model, prompt=scenarios.PROMPTS[0], max_tokens=4, temperature=0.0)
    assert r.usage.completion_tokens == 4  # and the server keeps serving
