"""Batched finite-horizon LQR first-control solve of the TTC layer (Triton forward and backward)."""

from .op import LQRResult, lqr
from .reference import LQR_BAD_INPUT, LQR_NONFINITE, LQR_NOT_POSITIVE_DEFINITE, LQR_OK

__all__ = ["lqr", "LQRResult", "LQR_OK", "LQR_BAD_INPUT", "LQR_NOT_POSITIVE_DEFINITE", "LQR_NONFINITE"]
