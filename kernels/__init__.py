"""Shared Triton kernels of ttc-plugins (installed as ``ttc_plugins.kernels``).

One folder per op (``lqr/``, ``residual_control/``, ``branch_scores/``), each with a readable
PyTorch ``reference.py`` beside the Triton kernel; only the fast ops are exported here. Every op
runs its Triton kernel on CUDA tensors (or anywhere under ``TRITON_INTERPRET=1``) and falls back
to its reference otherwise.

Import note: the op functions shadow their subpackage names on this package, so reach the
references with ``from ttc_plugins.kernels.lqr.reference import lqr_reference`` (a from-import),
not ``import ttc_plugins.kernels.lqr.reference as ...``.
"""

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
