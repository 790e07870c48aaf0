"""Public entry point :func:`residual_control` (in place, torch.compile-friendly custom op)."""

from __future__ import annotations

import torch

from .._checks import FLOAT_DTYPES, INT_DTYPES, check_tensor, use_triton
from .reference import residual_control_reference


@torch.library.custom_op("ttc_kernels::residual_control", mutates_args=("hidden",))
def _residual_control_op(
    hidden: torch.Tensor, token_slot: torch.Tensor, vectors: torch.Tensor, scales: torch.Tensor,
    modes: torch.Tensor, preserve_norm: torch.Tensor,
) -> None:
    if use_triton(hidden):
        from .triton_fwd import residual_control_triton

        residual_control_triton(hidden, token_slot, vectors, scales, modes, preserve_norm)
    else:
        residual_control_reference(hidden, token_slot, vectors, scales, modes, preserve_norm)


@_residual_control_op.register_fake
def _(hidden, token_slot, vectors, scales, modes, preserve_norm) -> None:
    return None


def _validate(hidden, token_slot, vectors, scales, modes, preserve_norm) -> None:
    check_tensor("hidden", hidden, ndim=2, dtypes=FLOAT_DTYPES)
    N, Hd = hidden.shape
    if Hd > 1 and hidden.stride(1) != 1:
        raise ValueError("hidden must have unit stride in its last dimension (it is updated in place)")
    dev = hidden.device
    check_tensor("token_slot", token_slot, shape=(N,), dtypes=INT_DTYPES, device=dev)
    check_tensor("vectors", vectors, ndim=2, dtypes=FLOAT_DTYPES, device=dev)
    S = vectors.shape[0]
    check_tensor("vectors", vectors, shape=(S, Hd))
    check_tensor("scales", scales, shape=(S,), dtypes=FLOAT_DTYPES, device=dev)
    check_tensor("modes", modes, shape=(S,), dtypes=INT_DTYPES, device=dev)
    check_tensor("preserve_norm", preserve_norm, shape=(S,), dtypes=(torch.bool,), device=dev)


def residual_control(
    hidden: torch.Tensor,
    token_slot: torch.Tensor,
    vectors: torch.Tensor,
    scales: torch.Tensor,
    modes: torch.Tensor,
    preserve_norm: torch.Tensor,
) -> torch.Tensor:
    """Apply per-request hidden-state controls to a flattened token batch, in place, in one launch.

    Args (N tokens, Hd hidden size, S control slots):
        hidden:        [N, Hd] float32/float16/bfloat16, unit stride in dim 1; updated in place.
        token_slot:    [N] int32/int64: the slot controlling each token; -1 (or any value outside
                       [0, S)) leaves the row bit-for-bit untouched.
        vectors:       [S, Hd] float (any of the three dtypes): the control direction per slot.
        scales:        [S] float: the strength per slot.
        modes:         [S] int: 0 = additive (h += scale * v); 1 = projection (remove h's
                       component along v^ = v/|v| and add scale * v^, i.e. set that component to
                       scale; |v| = 0 leaves the row as is); other values leave the row untouched.
        preserve_norm: [S] bool: after the update, rescale the row to its original L2 norm
                       (GrAInS); skipped if the updated row has norm 0.

    Returns ``hidden`` (the same tensor). The math runs in float32 for every dtype. No host
    synchronisation and no branching on tensor values, so it can sit inside a torch.compile'd
    forward or a CUDA graph (registered as the custom op ``torch.ops.ttc_kernels.residual_control``,
    which mutates ``hidden``). Runs the Triton kernel on CUDA (or under TRITON_INTERPRET=1),
    otherwise the PyTorch reference.
    """
    _validate(hidden, token_slot, vectors, scales, modes, preserve_norm)
    _residual_control_op(hidden, token_slot, vectors, scales, modes, preserve_norm)
    return hidden
