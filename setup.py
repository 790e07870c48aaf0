"""Package mapping: the non-core folders install inside the ``ttc_plugins`` namespace.

``vllm_backend/`` becomes ``ttc_plugins.vllm_backend`` (likewise ``sglang_backend/``), and each op
folder ``kernels/<op>/`` becomes ``ttc_plugins.kernels.<op>``, so no generic top-level module such
as ``kernels`` lands in site-packages.

``kernels/`` itself is deliberately *not* a Python package (no ``__init__.py``): Python puts the
working directory first on ``sys.path``, so a regular package named ``kernels`` at the repository
root would shadow Hugging Face's ``kernels`` distribution (which transformers imports) for anyone
running Python there. ``ttc_plugins.kernels``'s own ``__init__`` (the exported fast ops) and the
shared checks live in ``ttc_plugins/kernels/``. Subpackages are discovered here so a new
``kernels/<op>/`` needs no edit. Everything else lives in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
NAMESPACE_MAP = {
    "ttc_plugins": "ttc_plugins",
    "ttc_plugins.vllm_backend": "vllm_backend",
    "ttc_plugins.sglang_backend": "sglang_backend",
    # one entry per op folder: kernels/<op>/ -> ttc_plugins.kernels.<op>
    **{f"ttc_plugins.kernels.{op.parent.name}": f"kernels/{op.parent.name}"
       for op in sorted(HERE.glob("kernels/*/__init__.py"))},
}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for name, folder in NAMESPACE_MAP.items():
        packages.append(name)
        package_dir[name] = folder
        packages += [f"{name}.{sub}" for sub in find_packages(folder, exclude=["*.tests", "tests"])]
    return sorted(set(packages)), package_dir


packages, package_dir = _packages()
setup(packages=packages, package_dir=package_dir)
