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
        # the wheel adds no top-level kernels/vllm_backend/... (an installed HF `kernels` may exist)
        f"for top in ('kernels', 'vllm_backend', 'sglang_backend'):\n"
        "    spec = importlib.util.find_spec(top)\n"
        f"    assert spec is None or not (spec.origin or '').startswith({str(target)!r}), (top, spec)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert all(Path(f).is_relative_to(target / "ttc_plugins") for f in out), out


def _site_packages_of(module) -> bool:
    return any(part in ("site-packages", "dist-packages") for part in Path(module.__file__).parts)


def test_the_suite_tests_the_installed_package():
    """nox installs ttc-plugins as a wheel and runs pytest with PYTHONSAFEPATH=1: the tests import
    the installed package, not the checkout's source folders."""
    import ttc_plugins
    import ttc_plugins.kernels

    if not os.environ.get("PYTHONSAFEPATH"):
        pytest.skip("outside nox (PYTHONSAFEPATH unset): a development run may import the checkout")
    assert str(ROOT) not in [str(Path(p).resolve()) for p in sys.path if p], sys.path
    assert _site_packages_of(ttc_plugins) and _site_packages_of(ttc_plugins.kernels), ttc_plugins.__file__


def test_kernels_folder_is_not_a_package():
    """kernels/ at the root must not be importable as a regular package named ``kernels``."""
    assert not (ROOT / "kernels" / "__init__.py").exists()
    assert not (ROOT / "kernels.py").exists()


def test_python_at_the_repo_root_imports_installed_distributions():
    """A person who runs ``python`` at the repository root gets Hugging Face's ``kernels`` (which
    transformers imports), and ``ttc_plugins.kernels`` is ours: nothing in the checkout shadows an
    installed distribution."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("kernels")
    except PackageNotFoundError:
        pytest.skip("Hugging Face's kernels distribution is not installed")
    code = (
        "import sys, transformers, kernels, ttc_plugins.kernels\n"
        "lqr = sys.modules['ttc_plugins.kernels.lqr']  # the op function shadows the subpackage's name\n"
        "print(kernels.__file__); print(ttc_plugins.kernels.__file__); print(lqr.__file__)\n"
        "assert hasattr(kernels, 'get_kernel'), 'not the Hugging Face kernels module'\n"
        "assert callable(ttc_plugins.kernels.lqr) and callable(ttc_plugins.kernels.residual_control)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hf_kernels, ours, lqr = (Path(p) for p in proc.stdout.split())
    assert not hf_kernels.is_relative_to(ROOT) and "site-packages" in hf_kernels.parts, hf_kernels
    assert ours.parent.name == "kernels" and ours.parent.parent.name == "ttc_plugins", ours
    assert lqr.parent.name == "lqr", lqr


def test_no_top_level_name_in_the_checkout_is_an_installed_distribution():
    """Every folder or module at the repository root that Python could import from there is not
    the import name of some other installed distribution."""
    from importlib.metadata import packages_distributions

    provided = packages_distributions()
    ours = {"ttc_plugins"}
    for entry in ROOT.iterdir():
        name = entry.stem if entry.suffix == ".py" else entry.name
        importable = (entry.is_dir() and (entry / "__init__.py").exists()) or entry.suffix == ".py"
        if importable and name not in ours:
            assert name not in provided, f"{entry.name} at the repo root shadows {provided[name]}"
