"""Shared input checks and dispatch helpers for the kernels.

Every check here looks only at tensor *metadata* (shape, dtype, device), never at values, so it
costs no device synchronisation and traces cleanly under ``torch.compile`` (fake tensors).
Errors name the offending argument: ``TypeError`` for a wrong type/dtype, ``ValueError`` for a
wrong shape, device or value.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Sequence
from functools import lru_cache

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
INT_DTYPES = (torch.int32, torch.int64)


def interpreter_enabled() -> bool:
    """True when ``TRITON_INTERPRET=1``: Triton kernels then run on CPU tensors (tests, CI)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@lru_cache(maxsize=1)
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def use_triton(t: torch.Tensor) -> bool:
    """Dispatch rule shared by all ops: the Triton kernel runs on CUDA tensors, or anywhere under
    the Triton interpreter; otherwise (or when Triton is not installed) the op falls back to its
    PyTorch reference. Triton itself is imported only when a kernel runs."""
    return (t.is_cuda or interpreter_enabled()) and triton_available()


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def check_tensor(
    name: str,
    t: object,
    *,
    shape: Sequence[int | None] | None = None,
    ndim: int | None = None,
    dtypes: Iterable[torch.dtype] | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Validate one tensor argument; ``None`` entries in ``shape`` match any size."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if dtypes is not None:
        dtypes = tuple(dtypes)
        if t.dtype not in dtypes:
            allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
            raise TypeError(f"{name} must have dtype in ({allowed}), got {str(t.dtype).replace('torch.', '')}")
    if shape is not None:
        ndim = len(shape)
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if shape is not None:
        for i, (want, got) in enumerate(zip(shape, t.shape)):
            if want is not None and int(want) != int(got):
                raise ValueError(
                    f"{name} has shape {tuple(t.shape)}; expected size {want} in dim {i} "
                    f"(expected {tuple('*' if s is None else s for s in shape)})"
                )
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device}, expected {device} (same device as the other inputs)")
    return t


def check_same_dtype(names_tensors: Sequence[tuple[str, torch.Tensor]]) -> torch.dtype:
    """All float inputs of an op share one dtype; report the first that differs."""
    first_name, first = names_tensors[0]
    for name, t in names_tensors[1:]:
        if t.dtype != first.dtype:
            raise TypeError(
                f"{name} has dtype {str(t.dtype).replace('torch.', '')} but {first_name} has "
                f"{str(first.dtype).replace('torch.', '')}; all float inputs must share one dtype"
            )
    return first.dtype
