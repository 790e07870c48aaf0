"""Shared helpers for the kernel tests (FLA style: compare the Triton op with its reference).

CI runs these on CPU under ``TRITON_INTERPRET=1``; on a machine with CUDA they run on the GPU.
Without either, the kernel-vs-reference tests skip (only the fallback/validation tests run).
"""

from __future__ import annotations

import pytest
import torch

from ttc_plugins.kernels._checks import interpreter_enabled


def _kernel_device() -> str | None:
    if torch.cuda.is_available():
        return "cuda"
    if interpreter_enabled():
        return "cpu"
    return None


@pytest.fixture
def device() -> str:
    dev = _kernel_device()
    if dev is None:
        pytest.skip("the Triton path needs CUDA or TRITON_INTERPRET=1")
    return dev


def err_ratio(ref: torch.Tensor, out: torch.Tensor) -> float:
    """RMS(out - ref) / RMS(ref), in float64."""
    ref, out = ref.double(), out.double()
    diff = (out - ref).square().mean().sqrt().item()
    base = ref.square().mean().sqrt().item()
    return diff / base if base > 0 else diff


def assert_close(name: str, ref: torch.Tensor, out: torch.Tensor, ratio: float) -> None:
    """Fail on NaN/inf in ``out`` (unless ``ref`` has the same non-finite entry), on a shape
    mismatch, or when the relative RMS error exceeds ``ratio``. Tolerances are per dtype and
    fixed: do not loosen them to get green."""
    assert ref.shape == out.shape, f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    ref_bad = ~torch.isfinite(ref.double())
    out_bad = ~torch.isfinite(out.double())
    assert torch.equal(ref_bad, out_bad), f"{name}: non-finite entries differ ({int(out_bad.sum())} in output)"
    if ref_bad.any():
        assert torch.equal(ref.double()[ref_bad].nan_to_num(), out.double()[ref_bad].nan_to_num()), name
        ref, out = ref.double()[~ref_bad], out.double()[~ref_bad]
    e = err_ratio(ref, out)
    assert e == e and e <= ratio, f"{name}: relative error {e:.3e} > {ratio:.1e}"


@pytest.fixture(name="assert_close")
def _assert_close_fixture():
    """The :func:`assert_close` helper as a fixture (test dirs are not packages)."""
    return assert_close
