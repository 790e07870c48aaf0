from __future__ import annotations

from ttc_plugins import hookimpl
from ttc_plugins.manager import TTCPluginManager


class Recorder:
    """Records forks and releases as they pass through the hooks."""

    def __init__(self):
        self.forked: list[str] = []
        self.released: list[str] = []
        self.step_boundaries = 0
        self.finished: list[str] = []
        self.evict_calls = 0

    @hookimpl(wrapper=True)
    def ttc_fork_branch(self, ctx, parent, k):
        children = yield
        if children is not None:
            self.forked += [c.id for c in children]
        return children

    @hookimpl
    def ttc_release_branches(self, ctx, branches):
        self.released += [b.id for b in branches]

    @hookimpl
    def ttc_step_boundary(self, ctx, branch, step):
        self.step_boundaries += 1

    @hookimpl
    def ttc_request_finished(self, ctx, report):
        self.finished.append(ctx.request_id)

    @hookimpl(wrapper=True)
    def ttc_select_evictions(self, ctx, branches, kv_budget_tokens):
        self.evict_calls += 1
        return (yield)


def build_pm() -> tuple[TTCPluginManager, Recorder]:
    pm = TTCPluginManager(load_entrypoints=False)  # the strategies and scorers are default plugins
    rec = Recorder()
    pm.register(rec, name="recorder")
    return pm, rec


PROMPT = "Problem: Ann has 5 apples, buys 3 more, then doubles them. How many?\nSolution:\n"


def trap_world():
    """Greedy (and sampling) prefer wrong arithmetic; only 5+3=8 then 8*2=16 leads to 16."""
    return {
        "": [("5 + 3 = 9\n", 0.6), ("5 + 3 = 8\n", 0.4)],
        "5 + 3 = 9\n": [("9 * 2 = 18\n", 0.7), ("9 * 2 = 20\n", 0.3)],
        "5 + 3 = 8\n": [("8 * 2 = 17\n", 0.6), ("8 * 2 = 16\n", 0.4)],
        "5 + 3 = 9\n9 * 2 = 18\n": [("The answer is 18.\n", 1.0)],
        "5 + 3 = 9\n9 * 2 = 20\n": [("The answer is 20.\n", 1.0)],
        "5 + 3 = 8\n8 * 2 = 17\n": [("The answer is 17.\n", 1.0)],
        "5 + 3 = 8\n8 * 2 = 16\n": [("The answer is 16.\n", 1.0)],
    }


def bushy_world(depth: int = 3):
    """Every step has three correct phrasings and one wrong one, so many leaves score alike."""

    def world(path: str):
        d = path.count("\n")
        v = 2 ** (d + 1)
        if d >= depth:
            return [(f"The answer is {v}.\n", 1.0)] if "= 99" not in path else [("The answer is 99.\n", 1.0)]
        return [
            (f"{v} * 2 = {2 * v}\n", 0.3),
            (f"2 * {v} = {2 * v}\n", 0.25),
            (f"{v} + {v} = {2 * v}\n", 0.25),
            (f"{v} * 2 = 99\n", 0.2),
        ]

    return world


def reworded_world():
    """Every step comes in four wordings of one idea (equally likely, all correct): a sentence
    embedder puts them in one cluster, character trigrams in four."""
    first = ["Ann buys 3 more apples, so she has 5 + 3 = 8 apples.\n",
             "After buying three more, Ann has 8 apples in total.\n",
             "5 plus 3 equals 8, so Ann now has 8 apples.\n",
             "Adding her 3 new apples to the 5 she had gives 8 apples.\n"]
    second = ["Doubling them gives 8 * 2 = 16 apples.\n", "Twice 8 apples is 16 apples.\n",
              "When she doubles her 8 apples she gets 16.\n", "8 apples doubled makes 16 apples.\n"]

    def world(path: str):
        d = path.count("\n")
        return [(t, 1.0) for t in (first, second)[d]] if d < 2 else [("The answer is 16.\n", 1.0)] if d == 2 else None

    return world
