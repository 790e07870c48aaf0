"""One test per hook (the meta-test checks the names): its default behaviour and its calling
convention (firstresult / all implementations / historic)."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from ttc_plugins import hookimpl
from ttc_plugins.errors import TTCParamError
from ttc_plugins.kv.held import HeldState
from ttc_plugins.types import Branch, ControlPlan, ControlSpec, EngineFacts, KVStats, RequestContext, RequestReport, Score, Step


class NoParams(BaseModel):
    pass


def _component(name: str, **attrs):
    return type(name.title(), (), {"name": name, "Params": NoParams, **attrs})


def _ctx(pm, raw=None, **facts):
    """A request's context; ``facts`` (hidden_size, num_layers, vectors, ...): its engine's."""
    return RequestContext("req-1", params=pm.parse_params(raw), facts=EngineFacts(**facts) if facts else None)


# -- registration ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "hook, registry",
    [
        ("ttc_register_search_strategies", "strategies"),
        ("ttc_register_scorers", "scorers"),
        ("ttc_register_controls", "controls"),
        ("ttc_register_decoders", "decoders"),
        ("ttc_register_embedders", "embedders"),
    ],
)
def test_registration_hooks_are_historic(pm, hook, registry):
    component = _component(f"late_{registry}")
    plugin = type("Late", (), {hook: hookimpl(lambda self, register: register(component))})()
    pm.register(plugin, name="late")  # after the host already called the hook: replayed
    assert getattr(pm, registry).get(component.name) is component


def test_hook_ttc_register_search_strategies(pm):
    test_registration_hooks_are_historic(pm, "ttc_register_search_strategies", "strategies")
    params = pm.parse_params({"search": {"strategy": "late_strategies"}})
    assert params.search.name == "late_strategies"


def test_hook_ttc_register_scorers(pm):
    test_registration_hooks_are_historic(pm, "ttc_register_scorers", "scorers")


def test_hook_ttc_register_controls(pm):
    assert pm.controls.names() == ["steering", "ttc_layer"]
    test_registration_hooks_are_historic(pm, "ttc_register_controls", "controls")


def test_hook_ttc_register_decoders(pm):
    assert pm.decoders.names() == ["ban_tokens", "force_token"]
    test_registration_hooks_are_historic(pm, "ttc_register_decoders", "decoders")


def test_hook_ttc_register_embedders(pm):
    from ttc_plugins.embedding import HashingEmbedder
    from ttc_plugins.search import run_search
    from ttc_plugins.testing.scripted_engine import ScriptedEngine

    assert pm.embedders.names() == ["hashing", "minilm"]
    test_registration_hooks_are_historic(pm, "ttc_register_embedders", "embedders")
    seen: list[str] = []

    class Constant(HashingEmbedder):  # every step the same idea: one cluster
        name = "constant"
        cluster_distance = 0.5

        def __call__(self, texts):
            seen.extend(texts)
            return [[1.0, 0.0] for _ in texts]

    pm.register(type("P", (), {"ttc_register_embedders": hookimpl(lambda self, register: register(Constant))})())
    world = {"": [("a = 1\n", 0.5), ("b = 1\n", 0.5)], "a = 1\n": [("The answer is 1.\n", 1.0)],
             "b = 1\n": [("The answer is 1.\n", 1.0)]}
    engine = ScriptedEngine(world)
    search = {"strategy": "ets", "embedder": "constant", "width": 4, "step_delimiter": "\n", "temperature": 1.0}
    (res,) = run_search(engine, ["Q:\n"], search, pm=pm)
    assert seen and engine.calls["embed"] == 0  # the registered embedder ran, not the engine's
    assert res.info["embedder"] == "constant" and res.info["cluster_distance"] == 0.5


# -- decoding ----------------------------------------------------------------------------------
def test_hook_ttc_process_logits(pm):
    torch = pytest.importorskip("torch")
    from ttc_plugins.types import LogitsBatch, LogitsRow

    logits = torch.randn(4, 10)
    before = logits.clone()
    forced = _ctx(pm, {"decoding": [{"name": "force_token", "token_id": 3}]})
    banned = _ctx(pm, {"decoding": [{"name": "ban_tokens", "token_ids": [0, 1, 99]}]})
    limited = _ctx(pm, {"decoding": [{"name": "force_token", "token_id": 5, "max_forced": 2}]})
    rows = [LogitsRow(1, forced, []), LogitsRow(2, banned, []), LogitsRow(3, limited, [5, 5])]
    pm.hook.ttc_process_logits(batch=LogitsBatch(logits, rows))
    assert torch.equal(logits[0], before[0])  # row 0 did not opt in: bit-identical
    assert logits[1].argmax() == 3 and torch.isinf(logits[1]).sum() == 9
    assert torch.isinf(logits[2, :2]).all() and torch.equal(logits[2, 2:], before[2, 2:])
    assert torch.equal(logits[3], before[3])  # max_forced reached: free again


def test_hook_ttc_accept_token(pm):
    ctx = _ctx(pm)
    assert pm.hook.ttc_accept_token(ctx=ctx, token_id=7, position=0) is None  # no opinion: accepted

    class RejectSevens:
        @hookimpl
        def ttc_accept_token(self, ctx, token_id, position):
            return False if token_id == 7 else None

    class AcceptAll:
        @hookimpl(trylast=True)
        def ttc_accept_token(self, ctx, token_id, position):
            return True

    pm.register(RejectSevens(), name="r7")
    pm.register(AcceptAll(), name="all")
    assert pm.hook.ttc_accept_token(ctx=ctx, token_id=7, position=3) is False
    assert pm.hook.ttc_accept_token(ctx=ctx, token_id=8, position=3) is True


class Recorder:
    """Records every call of the notification hooks."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def ttc_step_boundary(self, ctx, branch, step):
        self.calls.append(("step", branch.id, step.text))

    @hookimpl
    def ttc_request_finished(self, ctx, report):
        self.calls.append(("finished", report.request_id, report.finish_reason))

    @hookimpl
    def ttc_release_branches(self, ctx, branches):
        self.calls.append(("release", tuple(b.id for b in branches)))

    @hookimpl
    def ttc_kv_report(self, ctx, stats):
        self.calls.append(("kv", stats.tokens_reused, stats.tokens_computed))


@pytest.fixture
def recorders(pm):
    recs = [Recorder(), Recorder()]
    for i, r in enumerate(recs):
        pm.register(r, name=f"rec{i}")
    return recs


def test_hook_ttc_step_boundary(pm, recorders):
    b = Branch("b1", None, (1, 2))
    pm.hook.ttc_step_boundary(ctx=_ctx(pm), branch=b, step=Step("b1", "2+2=4\n", (5, 6)))
    assert all(r.calls == [("step", "b1", "2+2=4\n")] for r in recorders)  # every impl runs


def test_hook_ttc_request_finished(pm, recorders):
    pm.hook.ttc_request_finished(ctx=_ctx(pm), report=RequestReport("req-1", "stop", (4, 5)))
    assert all(r.calls == [("finished", "req-1", "stop")] for r in recorders)


# -- KV management -----------------------------------------------------------------------------
def test_hook_ttc_cache_salt(pm):
    plain = RequestContext("a")
    steered = RequestContext("b", control=ControlSpec.build("steering", [1], {"vector": [1.0], "scale": 2.0}))
    same = RequestContext("c", control=ControlSpec.build("steering", [1], {"scale": 2.0, "vector": [1.0]}))
    other = RequestContext("d", control=ControlSpec.build("steering", [1], {"vector": [1.0], "scale": 3.0}))
    assert pm.hook.ttc_cache_salt(ctx=plain) is None  # plain requests keep sharing
    salt = pm.hook.ttc_cache_salt(ctx=steered)
    assert salt == steered.control.key == pm.hook.ttc_cache_salt(ctx=same)
    assert salt != pm.hook.ttc_cache_salt(ctx=other)

    class Tenant:
        @hookimpl
        def ttc_cache_salt(self, ctx):
            return "tenant-" + ctx.request_id

    pm.register(Tenant(), name="tenant")
    assert pm.hook.ttc_cache_salt(ctx=plain) == "tenant-a"  # a plugin answers before the default


def test_hook_ttc_fork_branch(pm):
    parent = Branch("root", None, (1, 2, 3), token_ids=(4,), text="x", scores=[Score(0.5)])
    children = pm.hook.ttc_fork_branch(ctx=_ctx(pm), parent=parent, k=3)
    assert [c.id for c in children] == ["root.0", "root.1", "root.2"]  # numbered per parent
    assert [c.id for c in pm.hook.ttc_fork_branch(ctx=_ctx(pm), parent=parent, k=1)] == ["root.3"]
    for c in children:
        assert c.parent_id == "root" and c.all_token_ids == (1, 2, 3, 4) and c.text == "x"
        assert c.scores == parent.scores and c.scores is not parent.scores
    with pytest.raises(ValueError, match="k >= 1"):
        pm.hook.ttc_fork_branch(ctx=_ctx(pm), parent=parent, k=0)
    done = Branch("done", None, (1,), finished=True, finish_reason="eos")
    with pytest.raises(ValueError, match="finished"):
        pm.hook.ttc_fork_branch(ctx=_ctx(pm), parent=done, k=2)

    class InEngineFork:
        @hookimpl
        def ttc_fork_branch(self, ctx, parent, k):
            return [Branch(f"live{i}", parent.id, parent.prompt_token_ids, handle="engine") for i in range(k)]

    pm.register(InEngineFork(), name="fork")
    assert [c.handle for c in pm.hook.ttc_fork_branch(ctx=_ctx(pm), parent=parent, k=2)] == ["engine"] * 2


def test_hook_ttc_fork_branch_shares_the_parents_held_state(pm):
    freed = []
    held = HeldState("k1", freed.append)
    parent = Branch("p", None, (1, 2), handle=held)
    children = pm.hook.ttc_fork_branch(ctx=_ctx(pm), parent=parent, k=2)
    assert all(c.handle is held for c in children) and held.refs == 3
    pm.hook.ttc_release_branches(ctx=_ctx(pm), branches=[parent, children[0]])
    assert held.refs == 1 and freed == [] and parent.handle is None
    pm.hook.ttc_release_branches(ctx=_ctx(pm), branches=[children[1]])
    assert freed == ["k1"] and not held.live
    # a child of a branch whose held state is gone forks by prefix alone
    late = Branch("q", None, (1,), handle=held)
    assert [c.handle for c in pm.hook.ttc_fork_branch(ctx=_ctx(pm), parent=late, k=1)] == [None]


def test_hook_ttc_release_branches(pm, recorders):
    pm.hook.ttc_release_branches(ctx=_ctx(pm), branches=[Branch("a", None, ()), Branch("b", None, ())])
    assert all(r.calls == [("release", ("a", "b"))] for r in recorders)


def test_hook_ttc_kv_report(pm, recorders):
    pm.hook.ttc_kv_report(ctx=_ctx(pm), stats=KVStats(tokens_computed=12, tokens_reused=128))
    assert all(r.calls == [("kv", 128, 12)] for r in recorders)


def test_hook_ttc_select_evictions(pm):
    def br(i, score, n):
        return Branch(f"b{i}", None, tuple(range(n)), scores=[Score(score)])

    live = [br(0, 0.9, 10), br(1, 0.1, 10), br(2, 0.5, 10)]
    assert pm.hook.ttc_select_evictions(ctx=_ctx(pm), branches=live, kv_budget_tokens=30) == []
    assert pm.hook.ttc_select_evictions(ctx=_ctx(pm), branches=live, kv_budget_tokens=20) == ["b1"]
    assert pm.hook.ttc_select_evictions(ctx=_ctx(pm), branches=live, kv_budget_tokens=10) == ["b1", "b2"]
    assert pm.hook.ttc_select_evictions(ctx=_ctx(pm), branches=live, kv_budget_tokens=0) == ["b1", "b2"]


# -- hidden-state control ----------------------------------------------------------------------
def test_hook_ttc_resolve_control(pm, tmp_path):
    assert pm.hook.ttc_resolve_control(ctx=_ctx(pm)) is None
    raw = {"control": {"name": "steering", "layers": [2, 1, 2], "vector": [1, 0, 0], "scale": 4, "mode": "project"}}
    spec = pm.hook.ttc_resolve_control(ctx=_ctx(pm, raw, hidden_size=3, num_layers=4))
    assert spec.kind == "steering" and spec.layers == (1, 2)
    assert spec.args == {"vector": [1.0, 0.0, 0.0], "scale": 4.0, "mode": "project", "preserve_norm": False}
    assert ControlSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec

    from ttc_plugins.controls.vectors import VectorLibrary

    (tmp_path / "honest.json").write_text("[0.5, 0.5, 0.0]")
    named = {"control": {"name": "steering", "layers": [0], "vector": "honest"}}
    lib = VectorLibrary({"honest": str(tmp_path / "honest.json")})
    spec = pm.hook.ttc_resolve_control(ctx=_ctx(pm, named, vectors=lib, hidden_size=3))
    assert spec.args["vector"] == [0.5, 0.5, 0.0]

    with pytest.raises(TTCParamError, match="ttc.control.vector: unknown named vector 'sad'") as exc:
        pm.hook.ttc_resolve_control(ctx=_ctx(pm, {"control": {**named["control"], "vector": "sad"}}, vectors=lib))
    assert exc.value.field == "ttc.control.vector"
    with pytest.raises(TTCParamError) as exc:
        pm.hook.ttc_resolve_control(ctx=_ctx(pm, raw, hidden_size=8))
    assert exc.value.field == "ttc.control.vector" and "hidden size is 8" in exc.value.message
    with pytest.raises(TTCParamError) as exc:
        pm.hook.ttc_resolve_control(ctx=_ctx(pm, raw, hidden_size=3, num_layers=2))
    assert exc.value.field == "ttc.control.layers"


def test_hook_ttc_prepare_controls(pm):
    a = ControlSpec.build("steering", [0, 2], {"vector": [1.0, 2.0], "scale": 0.5, "mode": "add", "preserve_norm": True})
    b = ControlSpec.build("steering", [1], {"vector": [0.0, 1.0], "scale": -1.0, "mode": "project", "preserve_norm": False})
    unknown = ControlSpec.build("not_installed_here", [0])
    plan = ControlPlan(specs=[a, b, unknown], hidden_size=2, num_layers=3)
    pm.hook.ttc_prepare_controls(plan=plan)
    assert plan.vectors == {
        0: {0: ([1.0, 2.0], 0.5, ControlPlan.MODE_ADD, True)},
        1: {1: ([0.0, 1.0], -1.0, ControlPlan.MODE_PROJECT, False)},
        2: {0: ([1.0, 2.0], 0.5, ControlPlan.MODE_ADD, True)},
    }
    with pytest.raises(ValueError, match="hidden size is 2"):
        plan.add_vector(0, 0, [1.0], 1.0)
    with pytest.raises(ValueError, match="3 decoder layers"):
        plan.add_vector(3, 0, [1.0, 1.0], 1.0)
