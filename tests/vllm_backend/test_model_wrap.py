"""The TTC model classes ``register_models`` points vLLM's architectures at: with no
``additional_config.ttc`` they hand back vLLM's own model object (installed but unused changes
nothing); with it, the subclass installs the controls. The real engine run is in
``integration/vllm`` (mixed batches, eager and compiled)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from ttc_plugins.vllm_backend import model_wrap  # noqa: E402


class FakeBase(torch.nn.Module):
    """Stands in for a vLLM model class: only its constructor signature matters here."""

    def __init__(self, *, vllm_config, prefix=""):
        super().__init__()
        self.built_with = (vllm_config, prefix)


def _config(additional):
    return SimpleNamespace(additional_config=additional)


def test_without_ttc_config_the_engine_gets_the_base_class_itself(monkeypatch):
    installed = []
    monkeypatch.setattr(model_wrap, "install_controls", lambda model, cfg: installed.append(model))
    cls = model_wrap._wrapped_model_class("Fake", FakeBase)
    for additional in ({}, None, {"other_plugin": 1}, {"ttc": {"controls": False}}):
        model = cls(vllm_config=_config(additional), prefix="m")
        assert type(model) is FakeBase and model.built_with[1] == "m"
    assert installed == []


def test_with_ttc_config_the_subclass_installs_the_controls(monkeypatch):
    installed = []
    monkeypatch.setattr(model_wrap, "install_controls", lambda model, cfg: installed.append(model))
    cls = model_wrap._wrapped_model_class("Fake", FakeBase)
    model = cls(vllm_config=_config({"ttc": {}}), prefix="m")
    assert type(model) is cls and cls.__name__ == "TTCFake" and isinstance(model, FakeBase)
    assert installed == [model] and model.built_with[1] == "m"
