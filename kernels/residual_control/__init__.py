"""In-place per-request hidden-state controls (additive / projection, optional norm preservation)."""

from .op import residual_control
from .reference import MODE_ADDITIVE, MODE_PROJECTION

__all__ = ["residual_control", "MODE_ADDITIVE", "MODE_PROJECTION"]
