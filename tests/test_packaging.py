"""The three non-core folders install inside the ``ttc_plugins`` namespace, and nothing else does."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("ttc_plugins.kernels", "ttc_plugins.vllm_backend", "ttc_plugins.sglang_backend")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (whl,) = out.glob("ttc_plugins-*.whl")
    return whl


def test_wheel_has_no_top_level_module_but_ttc_plugins(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"ttc_plugins", next(t for t in tops if t.endswith(".dist-info"))}, tops
    for folder in ("kernels", "vllm_backend", "sglang_backend"):
        assert f"ttc_plugins/{folder}/__init__.py" in names
    top_level = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("top_level.txt"))).decode()
    assert top_level.split() == ["ttc_plugins"]


def test_every_source_package_is_in_the_wheel(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, ns in (("ttc_plugins", "ttc_plugins"), ("kernels", "ttc_plugins/kernels"),
                       ("vllm_backend", "ttc_plugins/vllm_backend"), ("sglang_backend", "ttc_plugins/sglang_backend")):
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.relative_to(ROOT / folder).as_posix()
            assert f"{ns}/{rel}" in names, f"{folder}/{rel} is missing from the wheel"


def test_wheel_install_imports_the_namespace(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = (
        "import importlib.util, sys\n"
        f"mods = [__import__(m, fromlist=['_']) for m in {SUBPACKAGES!r}]\n"
        "print('\\n'.join(m.__file__ for m in mods))\n"
        "assert importlib.util.find_spec('kernels') is None and importlib.util.find_spec('vllm_backend') is None\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert all(Path(f).is_relative_to(target / "ttc_plugins") for f in out), out


def test_editable_install_maps_the_folders():
    """In the development install, ttc_plugins.kernels is the repo's kernels/ folder."""
    import ttc_plugins.kernels
    import ttc_plugins.sglang_backend
    import ttc_plugins.vllm_backend

    assert Path(ttc_plugins.kernels.__file__).parent == ROOT / "kernels"
    assert Path(ttc_plugins.vllm_backend.__file__).parent == ROOT / "vllm_backend"
    assert Path(ttc_plugins.sglang_backend.__file__).parent == ROOT / "sglang_backend"
