"""The driver is asynchronous once: every engine call (scorers' included) is awaited on the
caller's loop, in its thread; the synchronous API runs the same coroutine."""

from __future__ import annotations

import asyncio
import threading

from ttc_plugins.search import SearchPrompt, arun_search, run_search
from ttc_plugins.testing.scripted_engine import ScriptedEngine

from search_support import PROMPT, build_pm, trap_world

PARAMS = {"strategy": "beam", "scorer": "self_eval", "step_delimiter": "\n", "width": 2, "max_steps": 3}


class _Observed(ScriptedEngine):
    """Records where each engine coroutine ran (thread, running loop)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.where: list[tuple[str, int, asyncio.AbstractEventLoop]] = []

    def _note(self, call: str) -> None:
        self.where.append((call, threading.get_ident(), asyncio.get_running_loop()))

    async def aextend(self, requests):
        self._note("extend")
        return await super().aextend(requests)

    async def averify_prob(self, requests):
        self._note("verify")
        return await super().averify_prob(requests)


def _verifier(prompt: str) -> float:
    return 0.9 if "= 16" in prompt else 0.1


def test_every_engine_call_is_awaited_on_the_callers_loop_and_thread():
    pm, _ = build_pm()
    engine = _Observed(trap_world(), verifier=_verifier)

    async def main():
        loop = asyncio.get_running_loop()
        res = await arun_search(engine, [SearchPrompt(PROMPT, reference="16", request_id="q")], PARAMS, pm=pm)
        return loop, res

    loop, (res,) = asyncio.run(main())
    calls = {call for call, _, _ in engine.where}
    assert calls == {"extend", "verify"}  # the scorer's verification went through the driver
    assert {(ident, lp) for _, ident, lp in engine.where} == {(threading.get_ident(), loop)}
    assert res.chosen_branch_id is not None


def test_the_synchronous_api_runs_the_same_search():
    pm, _ = build_pm()
    a = run_search(_Observed(trap_world(), verifier=_verifier), [SearchPrompt(PROMPT, request_id="q")], PARAMS, pm=pm)
    pm, _ = build_pm()
    b = asyncio.run(arun_search(_Observed(trap_world(), verifier=_verifier), [SearchPrompt(PROMPT, request_id="q")],
                                PARAMS, pm=pm))
    assert a[0].text == b[0].text and a[0].chosen_path == b[0].chosen_path


def test_the_synchronous_api_works_inside_a_running_loop():
    """A notebook runs a loop: a blocking engine's synchronous call still completes there."""
    pm, _ = build_pm()

    async def main():
        return run_search(_Observed(trap_world(), verifier=_verifier), [SearchPrompt(PROMPT, request_id="q")],
                          PARAMS, pm=pm)

    (res,) = asyncio.run(main())
    assert res.text
