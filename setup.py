"""Package mapping: the three non-core folders install inside the ``ttc_plugins`` namespace.

``kernels/`` becomes ``ttc_plugins.kernels`` (and likewise the two backends), so no generic
top-level module such as ``kernels`` lands in site-packages. Subpackages are discovered here so a
new ``kernels/<op>/`` needs no edit. Everything else lives in pyproject.toml.
"""

from setuptools import find_packages, setup

NAMESPACE_MAP = {
    "ttc_plugins": "ttc_plugins",
    "ttc_plugins.kernels": "kernels",
    "ttc_plugins.vllm_backend": "vllm_backend",
    "ttc_plugins.sglang_backend": "sglang_backend",
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
