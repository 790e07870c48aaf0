"""Every kernel compiles for a CUDA target, checked on CPU (no GPU needed).

The other kernel tests run under ``TRITON_INTERPRET=1``, which executes the kernels as plain
Python and so misses errors that only the compiler's frontend raises (for example a kernel reading
a global that is not a ``tl.constexpr``). Here each kernel goes through ``triton.compile`` for an
sm_90 target, in a subprocess without ``TRITON_INTERPRET`` (under it ``@triton.jit`` yields
interpreter objects that cannot be compiled). The signatures are those the launchers use.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _cases():
    from ttc_plugins.kernels.branch_scores import triton_fwd as bs
    from ttc_plugins.kernels.lqr import triton_bwd as lqb
    from ttc_plugins.kernels.lqr import triton_fwd as lq
    from ttc_plugins.kernels.residual_control import triton_fwd as rc

    rc_types = dict(h_ptr="*bf16", slot_ptr="*i32", v_ptr="*bf16", scale_ptr="*fp32", mode_ptr="*i32",
                    pn_ptr="*u8", stride_h="i64", stride_v="i64", Hd="i32", S="i32")
    lqr_ptrs = ("h0_ptr", "a_ptr", "rinv_ptr", "lga_ptr", "lgb_ptr", "lgq_ptr", "B_ptr", "Q_ptr", "Qf_ptr", "u_ptr")
    return {
        "branch_scores._partial_kernel": (
            bs._partial_kernel,
            dict(logits_ptr="*fp16", stride_row="i64", V="i32", ws_m_ptr="*fp32", ws_l_ptr="*fp32",
                 ws_key_ptr="*i64", SPLITS="i32"),
            dict(BLOCK_V=2048, CHUNKS_PER_SPLIT=4, K_PAD=8),
        ),
        "branch_scores._merge_kernel": (
            bs._merge_kernel,
            dict(logits_ptr="*fp16", stride_row="i64", V="i32", chosen_ptr="*i64", ws_m_ptr="*fp32",
                 ws_l_ptr="*fp32", ws_key_ptr="*i64", SPLITS="i32", k="i32", top_val_ptr="*fp32",
                 top_id_ptr="*i64", chosen_out_ptr="*fp32", lse_ptr="*fp32"),
            dict(SPLITS_PAD=16, K_PAD=8, HAS_CHOSEN=True),
        ),
        "residual_control (one chunk)": (rc._residual_control_kernel, rc_types, dict(BLOCK=4096, NUM_CHUNKS=1)),
        "residual_control (three chunks)": (rc._residual_control_kernel, rc_types, dict(BLOCK=4096, NUM_CHUNKS=3)),
        "lqr._lqr_fwd_kernel": (
            lq._lqr_fwd_kernel,
            {**dict.fromkeys(lqr_ptrs, "*fp32"), "T_ptr": "*i32", "status_ptr": "*i32", "NH": "i32", "H": "i32"},
            dict(D=13, DU=4, BP=2, BD=16, BDU=4, SYMPLECTIC=False),
        ),
        "lqr._lqr_fwd_kernel (symplectic)": (
            lq._lqr_fwd_kernel,
            {**dict.fromkeys(lqr_ptrs, "*fp32"), "T_ptr": "*i32", "status_ptr": "*i32", "NH": "i32", "H": "i32"},
            dict(D=13, DU=4, BP=2, BD=16, BDU=4, SYMPLECTIC=True),
        ),
        "lqr._lqr_bwd_kernel": (
            lqb._lqr_bwd_kernel,
            {**dict.fromkeys(lqr_ptrs[:-1], "*fp32"), "T_ptr": "*i32", "gu_ptr": "*fp32", "scratch_ptr": "*fp32",
             **dict.fromkeys(("dh0_ptr", "da_ptr", "drinv_ptr", "dlga_ptr", "dlgb_ptr", "dlgq_ptr", "dB_ptr", "dQ_ptr",
                              "dQf_ptr"), "*fp32"), "NH": "i32", "H": "i32", "TMAX": "i32"},
            dict(D=13, DU=4, BP=2, BD=16, BDU=4),
        ),
    }


def _compile_all() -> int:
    """Run in the subprocess: compile every case, print one line each, return the failure count."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", 90, 32)
    failures = 0
    for name, (fn, types, consts) in _cases().items():
        names = fn.arg_names
        assert set(types) | set(consts) == set(names), (name, sorted(set(names) ^ (set(types) | set(consts))))
        src = ASTSource(
            fn=fn,
            signature={n: "constexpr" if n in consts else types[n] for n in names},
            constexprs={(names.index(n),): v for n, v in consts.items()},
        )
        try:
            triton.compile(src, target=target)
            print(f"OK   {name}")
        except Exception as e:  # noqa: BLE001 - report every kernel, then fail
            failures += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    return failures


def test_kernels_compile_for_cuda(tmp_path):
    triton = pytest.importorskip("triton")
    from triton.backends import backends

    if "nvidia" not in backends:
        pytest.skip("this Triton build has no NVIDIA backend")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns while it is unset
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve())], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"triton {triton.__version__}:\n{proc.stdout[-6000:]}{proc.stderr[-3000:]}"


if __name__ == "__main__":
    sys.exit(1 if _compile_all() else 0)
