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


def _live_after(pm, rec, engine_factory, params, *, cancel_after_calls=None):
    """Run one search that fails (or is cancelled); return (error, branches created, released)."""
    engine = engine_factory()
    created: list[str] = []

    class Created:
        from ttc_plugins import hookimpl

        @hookimpl
        def ttc_step_boundary(self, ctx, branch, step):
            created.append(branch.id)

    pm.register(Created(), name="created")

    async def main():
        task = asyncio.ensure_future(arun_search(engine, [SearchPrompt(PROMPT, request_id="q")], params, pm=pm))
        if cancel_after_calls is not None:
            while len(engine.where) < cancel_after_calls:
                await asyncio.sleep(0)
            task.cancel()
        return await task

    try:
        asyncio.run(main())
    except BaseException as exc:  # noqa: BLE001
        return exc, set(created), set(rec.released)
    raise AssertionError("the search did not fail")


def test_a_failing_scorer_releases_every_branch_its_search_holds():
    from ttc_plugins import hookimpl
    from ttc_plugins.scoring.base import Scorer

    class Broken(Scorer):
        name = "broken"

        def score(self, items):
            raise RuntimeError("scorer bug")

    class Plugin:
        @hookimpl
        def ttc_register_scorers(self, register):
            register(Broken)

    pm, rec = build_pm()
    pm.register(Plugin(), name="broken-scorer")
    error, created, released = _live_after(pm, rec, lambda: _Observed(trap_world()), {**PARAMS, "scorer": "broken"})
    assert isinstance(error, RuntimeError) and "scorer bug" in str(error)
    assert created and created <= released


def test_a_cancelled_search_releases_every_branch_it_holds():
    """A client that goes away cancels the server's search coroutine: what the search holds in
    the engine is released at once (the driver closes its rounds)."""
    class Slow(_Observed):  # an engine call takes time: the loop runs other tasks meanwhile
        async def aextend(self, requests):
            await asyncio.sleep(0.01)
            return await super().aextend(requests)

    pm, rec = build_pm()
    error, created, released = _live_after(pm, rec, lambda: Slow(trap_world(), verifier=_verifier), PARAMS,
                                           cancel_after_calls=3)
    assert isinstance(error, asyncio.CancelledError)
    assert created and created <= released
