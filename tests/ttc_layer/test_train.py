"""Training TTC adapters on a frozen HF model (tiny random Llama): a closed gate changes no logit,
a few steps lower the loss, files round-trip exactly, a resumed run equals an uninterrupted one,
and bad input names what to fix."""

from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from ttc_plugins.testing import build_tiny_llama  # noqa: E402
from ttc_plugins.ttc_layer.adapter import TTCAdapter, save_adapters  # noqa: E402
from ttc_plugins.ttc_layer.config import TTCAdapterConfig, read_adapter_file  # noqa: E402
from ttc_plugins.ttc_layer.hf import attached  # noqa: E402
from ttc_plugins.ttc_layer.train import (  # noqa: E402
    TrainSettings, check_base_model, jsonl_examples, load_frozen, train,
)

TINY = dict(hidden=64, layers=2, heads=4, kv_heads=2, vocab=1024)
SMALL = {"heads": 2, "state_dim": 4, "control_dim": 3, "b_rank": 2, "q_rank": 2}


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_llama(**TINY)


@pytest.fixture
def toy(tmp_path):
    """A task the frozen random model cannot do and an adapter can learn a little of."""
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Q{i}:", "completion": "a b a b a b"}) + "\n" for i in range(8)))
    return path


def _settings(tiny, out, data, **kw) -> TrainSettings:
    base = dict(model=tiny, out=out, layers=(1,), problems=None, data=data, dev_data=data, horizons=(1, 4), steps=4,
                batch_size=4, lr=3e-2, warmup_steps=0, checkpoint_every=0, eval_every=0, chat=False,
                adapter=SMALL)
    return TrainSettings(**{**base, **kw})


def test_a_fresh_adapter_leaves_the_logits_bit_identical(tiny):
    model, tok = load_frozen(tiny)
    ids = torch.tensor([tok("hello there, how are you", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        base = model(input_ids=ids).logits
        fresh = {0: TTCAdapter(TTCAdapterConfig(hidden_size=64, **SMALL)),
                 1: TTCAdapter(TTCAdapterConfig(hidden_size=64, **SMALL))}
        for horizon in (1, 16):
            with attached(model, fresh, horizon):
                assert torch.equal(model(input_ids=ids).logits, base)


def test_a_few_steps_lower_the_loss_on_a_toy_task(tiny, toy, tmp_path):
    result = train(_settings(tiny, tmp_path / "run", toy, steps=25, eval_every=25))
    assert result.losses[-1] < result.losses[0]
    from ttc_plugins.ttc_layer.train import dev_loss, encode

    model, tok = load_frozen(tiny)
    rows = [encode(tok, e, chat=False, max_length=64) for e in jsonl_examples(toy)]
    trained = {1: TTCAdapter.load(result.adapter_path, layer=1)}
    off = dev_loss(model, {}, rows, 0, 4, 8)
    on = dev_loss(model, trained, rows, 0, 4, 8)
    assert on < off and result.dev_losses[25] == pytest.approx(on, rel=1e-4)
    lines = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, 26)) and "dev_loss" in lines[-1]


def test_the_file_round_trips_exactly_and_describes_itself(tiny, toy, tmp_path):
    result = train(_settings(tiny, tmp_path / "run", toy, layers=(0, 1)))
    info = read_adapter_file(result.adapter_path)
    assert info.format == 2 and info.layers == (0, 1) and info.horizon == (1, 4)
    assert info.base_model["hidden_size"] == 64 and info.base_model["num_hidden_layers"] == 2
    a = TTCAdapter.load(result.adapter_path, layer=1)
    again = tmp_path / "again.safetensors"
    save_adapters(again, {1: a}, base_model=info.base_model, horizon=info.horizon)
    b = TTCAdapter.load(again, layer=1)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    assert a.gate.abs().sum() > 0  # training opened the gate
    with pytest.raises(ValueError, match=r"layers \[0, 1\], not 3"):
        TTCAdapter.load(result.adapter_path, layer=3)


def test_a_resumed_run_equals_an_uninterrupted_one(tiny, toy, tmp_path):
    whole = train(_settings(tiny, tmp_path / "whole", toy, steps=4, checkpoint_every=2))
    part = tmp_path / "part"
    shutil.copytree(tmp_path / "whole" / "checkpoints" / "step-2", part / "checkpoints" / "step-2")
    resumed = train(_settings(tiny, part, toy, steps=4, checkpoint_every=2, resume=True))
    assert resumed.losses == whole.losses[2:]
    x = TTCAdapter.load(whole.adapter_path, layer=1).state_dict()
    y = TTCAdapter.load(resumed.adapter_path, layer=1).state_dict()
    assert all(torch.equal(x[k], y[k]) for k in x)


def test_bad_input_names_what_to_fix(tiny, toy, tmp_path):
    with pytest.raises(ValueError, match=r"layers: \[5\] not in the model's decoder layers 0..1"):
        train(_settings(tiny, tmp_path / "x", toy, layers=(5,)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": 3}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected"):
        jsonl_examples(bad)
    other = tmp_path / "other.safetensors"
    save_adapters(other, {0: TTCAdapter(TTCAdapterConfig(hidden_size=32, **SMALL))},
                  base_model={"name": "other", "hidden_size": 32, "num_hidden_layers": 2})
    model, _ = load_frozen(tiny)
    with pytest.raises(ValueError, match="adapter hidden size 32 != the model's 64"):
        check_base_model(read_adapter_file(other), model)
    deeper = tmp_path / "deeper.safetensors"
    save_adapters(deeper, {0: TTCAdapter(TTCAdapterConfig(hidden_size=64, **SMALL))},
                  base_model={"name": "deep", "hidden_size": 64, "num_hidden_layers": 30})
    with pytest.raises(ValueError, match=r"trained on 'deep' \(num_hidden_layers 30\)"):
        check_base_model(read_adapter_file(deeper), model)
