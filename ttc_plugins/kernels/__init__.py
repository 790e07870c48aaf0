"""Shared Triton kernels of ttc-plugins: ``ttc_plugins.kernels``.

The ops live in the repository's top-level ``kernels/<op>/`` folders (installed as
``ttc_plugins.kernels.<op>``; see ``kernels/README.md`` for why ``kernels/`` is not a package).
One folder per op (``lqr/``, ``residual_control/``, ``branch_scores/``), each with a readable
PyTorch ``reference.py`` beside the Triton kernel; only the fast ops are exported here. Every op
runs its Triton kernel on CUDA tensors (or anywhere under ``TRITON_INTERPRET=1``) and falls back
to its reference otherwise.

Import note: the op functions shadow their subpackage names on this package, so reach the
references with ``from ttc_plugins.kernels.lqr.reference import lqr_reference`` (a from-import),
not ``import ttc_plugins.kernels.lqr.reference as ...``.
"""

from pathlib import Path

# Imported straight from a checkout, the op folders are the repository's top-level kernels/<op>/
# (installed, setup.py puts them here as subpackages).
_OPS = Path(__file__).resolve().parents[2] / "kernels"
if not (Path(__file__).parent / "lqr").is_dir() and (_OPS / "lqr" / "__init__.py").is_file():
    __path__.append(str(_OPS))  # noqa: F821 - a package's __path__

from .branch_scores import BranchScores, branch_scores
from .lqr import LQR_BAD_INPUT, LQR_NONFINITE, LQR_NOT_POSITIVE_DEFINITE, LQR_OK, LQRResult, lqr
from .residual_control import MODE_ADDITIVE, MODE_PROJECTION, residual_control

__all__ = [
    "lqr",
    "LQRResult",
    "LQR_OK",
    "LQR_BAD_INPUT",
    "LQR_NOT_POSITIVE_DEFINITE",
    "LQR_NONFINITE",
    "residual_control",
    "MODE_ADDITIVE",
    "MODE_PROJECTION",
    "branch_scores",
    "BranchScores",
]
