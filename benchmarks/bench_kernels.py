"""Correctness + timing of every ttc_plugins kernel in one call; writes a markdown report.

GPU (the real run):   python benchmarks/bench_kernels.py
CPU smoke (CI/tests): python benchmarks/bench_kernels.py --smoke     (Triton interpreter, tiny
                      shapes, correctness only: no timing claims)

Needs only torch + triton + this repository (installed, or its root on PYTHONPATH). Writes
``benchmarks/results/kernels-<device-name>.md`` (``--out`` changes the folder) with the device,
versions, exact command, and per op: max error vs the reference, the kernel time, the PyTorch
reference time measured in the same run and their ratio, plus CUDA-graph capture checks.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import re
import shlex
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _import_kernels():
    """ttc_plugins.kernels when installed, else the repo's ``kernels/`` folder as a top-level
    package (the kernels use relative imports only, so either name works)."""
    try:
        return importlib.import_module("ttc_plugins.kernels")
    except ImportError:
        sys.path.insert(0, str(REPO))
        return importlib.import_module("kernels")


# ------------------------------------------------------------------------------------------
# shapes
# (tokens, heads, D, T); DU = D. The note's table first, then decode-time batches.
LQR_SHAPES = [
    (1024, 8, 16, 64), (1024, 1, 64, 64), (1024, 8, 64, 64), (4096, 8, 16, 64),
    (1024, 8, 16, 256), (64, 8, 64, 16),
    (16, 8, 16, 64), (64, 8, 16, 64), (256, 8, 16, 64), (64, 8, 16, 16), (256, 8, 64, 16),
    (64, 1, 16, 16),
]
LQR_SMOKE = [(3, 2, 5, 4), (2, 1, 16, 3)]
RC_SHAPES = [(64, 896), (256, 1536), (256, 4096), (4096, 4096), (256, 8192), (128, 16384)]  # (tokens, Hd)
RC_SMOKE = [(5, 40), (3, 100)]
BS_SHAPES = [(1, 152064, 8), (8, 152064, 8), (64, 152064, 64), (256, 152064, 8), (256, 32000, 64)]  # (rows, V, k)
BS_SMOKE = [(2, 300, 4)]


def lqr_flops_bytes(N, H, D, DU, T):
    """FLOPs of the sequential-rank-1 Riccati (per step and problem: DU rank-1 updates of
    4*D^2 + 3*D flops each, plus 3*D^2 for A P A + Q) and the bytes it must move once."""
    flops = N * H * T * (DU * (4 * D * D + 3 * D) + 3 * D * D)
    elems = N * H * (D * D + 3 * D + 2 * DU + 1 + DU) + N * (D * D + D * DU + 1)
    return flops, 4 * elems + 4 * N * H


def make_lqr_inputs(torch, N, H, D, DU, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    a = rnd(N, H, D)
    a = 0.5 * a / a.norm(dim=-1, keepdim=True)
    M = rnd(N, D, D)
    Q = M @ M.transpose(-1, -2) / D**0.5
    Mf = rnd(N, H, D, D)
    Qf = Mf @ Mf.transpose(-1, -2) / D**0.5
    xs = [
        rnd(N, H, D), a, torch.nn.functional.softplus(rnd(N, H, DU)).clamp_min(1e-6),
        -0.01 - 0.5 * torch.rand(N, H, generator=g), -0.01 - 0.5 * torch.rand(N, H, DU, generator=g),
        -0.01 - 0.5 * torch.rand(N, H, D, generator=g), rnd(N, D, DU) / D**0.5,
        0.5 * (Q + Q.transpose(-1, -2)), 0.5 * (Qf + Qf.transpose(-1, -2)),
    ]
    return [x.to(device) for x in xs]


class Bench:
    def __init__(self, args):
        import torch
        import triton

        self.torch, self.triton, self.args = torch, triton, args
        self.K = _import_kernels()
        self.pkg = self.K.__name__
        self.smoke = args.smoke
        self.device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
        self.rows: dict[str, list[str]] = {"lqr": [], "residual_control": [], "branch_scores": [], "graphs": []}
        self.failures: list[str] = []

    def sub(self, name):
        return importlib.import_module(f"{self.pkg}.{name}")

    def time_ms(self, fn):
        if self.smoke:
            fn()
            return float("nan")
        return self.triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")

    def check(self, label, ok, detail=""):
        if not ok:
            self.failures.append(f"{label}: {detail}")
        return "ok" if ok else f"FAIL {detail}"

    # --------------------------------------------------------------------------------------
    def bench_lqr(self):
        torch = self.torch
        lqr_reference = self.sub("lqr.reference").lqr_reference
        tol = 1e-5
        for N, H, D, T in LQR_SMOKE if self.smoke else LQR_SHAPES:
            DU = D
            xs = make_lqr_inputs(torch, N, H, D, DU, self.device)
            Tt = torch.full((N,), T, dtype=torch.int32, device=self.device)
            out = (torch.empty(N, H, DU, device=self.device), torch.empty(N, H, dtype=torch.int32, device=self.device))
            fast = lambda: self.K.lqr(*xs, Tt, out=out)  # noqa: E731
            with torch.no_grad():
                ms = self.time_ms(fast)
                fast()
                u_ref, st_ref = lqr_reference(*xs, Tt)  # float64
                ref_ms = self.time_ms(lambda: lqr_reference(*xs, Tt, compute_dtype=torch.float32))
            err = ((out[0].double() - u_ref).norm() / u_ref.norm()).item()
            row_err = ((out[0].double() - u_ref).norm(dim=-1) / u_ref.norm(dim=-1).clamp_min(1e-30)).max().item()
            status_ok = bool((out[1] == 0).all()) and bool((st_ref == 0).all())
            flops, nbytes = lqr_flops_bytes(N, H, D, DU, T)
            ok = self.check(f"lqr {N}x{H}x{D}x{T}", err <= tol and status_ok, f"rel.err {err:.1e}, status ok={status_ok}")
            self.rows["lqr"].append(
                f"| {N} | {H} | {D} | {DU} | {T} | {ref_ms:.3f} | {ms:.4f} | {ref_ms / ms:.1f}x | "
                f"{flops / 1e9:.2f} | {flops / ms / 1e9:.2f} | {nbytes / ms / 1e6:.1f} | {err:.1e} | {row_err:.1e} | {ok} |"
            )

    def bench_residual_control(self):
        torch = self.torch
        ref = self.sub("residual_control.reference").residual_control_reference
        dtype = torch.float32 if self.smoke else torch.bfloat16
        for N, Hd in RC_SMOKE if self.smoke else RC_SHAPES:
            S = 8
            g = torch.Generator().manual_seed(N + Hd)
            hidden = torch.randn(N, Hd, generator=g).to(dtype).to(self.device)
            slot = torch.randint(-1, S, (N,), generator=g).to(self.device)
            vec = torch.randn(S, Hd, generator=g).to(self.device)
            sc = torch.randn(S, generator=g).to(self.device)
            modes = (torch.arange(S) % 2).to(self.device)
            pn = (torch.arange(S) % 3 == 0).to(self.device)
            h_fast, h_ref = hidden.clone(), hidden.clone()
            self.K.residual_control(h_fast, slot, vec, sc, modes, pn)
            ref(h_ref, slot, vec, sc, modes, pn)
            err = (h_fast.float() - h_ref.float()).abs().max().item()
            scale = h_ref.float().abs().max().item()
            work = hidden.clone()
            ms = self.time_ms(lambda: self.K.residual_control(work, slot, vec, sc, modes, pn))
            ref_ms = self.time_ms(lambda: ref(work, slot, vec, sc, modes, pn))
            nbytes = 2 * hidden.numel() * hidden.element_size()  # lower bound: read + write every row
            tol = 1e-5 if dtype == torch.float32 else 2 ** -7
            ok = self.check(f"residual_control {N}x{Hd}", err <= tol * max(scale, 1.0), f"max err {err:.1e}")
            self.rows["residual_control"].append(
                f"| {N} | {Hd} | {str(dtype).split('.')[-1]} | {ref_ms:.4f} | {ms:.4f} | {ref_ms / ms:.1f}x | "
                f"{nbytes / ms / 1e6:.1f} | {err:.1e} | {ok} |"
            )

    def bench_branch_scores(self):
        torch = self.torch
        ref = self.sub("branch_scores.reference").branch_scores_reference
        dtype = torch.float32 if self.smoke else torch.bfloat16
        for R, V, k in BS_SMOKE if self.smoke else BS_SHAPES:
            g = torch.Generator().manual_seed(R + V + k)
            logits = (torch.randn(R, V, generator=g) * 4).to(dtype).to(self.device)
            chosen = torch.randint(0, V, (R,), generator=g).to(self.device)
            out = self.K.branch_scores(logits, k, chosen)
            vals, ids, ch, lse = ref(logits, k, chosen)
            err = max((out.topk_logprobs - vals).abs().max().item(), (out.chosen_logprobs - ch).abs().max().item(),
                      (out.logsumexp - lse).abs().max().item())
            ids_ok = bool(torch.equal(out.topk_ids, ids))
            ms = self.time_ms(lambda: self.K.branch_scores(logits, k, chosen))
            ref_ms = self.time_ms(lambda: ref(logits, k, chosen))
            nbytes = logits.numel() * logits.element_size()
            ok = self.check(f"branch_scores {R}x{V}x{k}", err <= 1e-4 and ids_ok, f"max err {err:.1e}, ids equal={ids_ok}")
            self.rows["branch_scores"].append(
                f"| {R} | {V} | {k} | {str(dtype).split('.')[-1]} | {ref_ms:.4f} | {ms:.4f} | {ref_ms / ms:.1f}x | "
                f"{nbytes / ms / 1e6:.1f} | {err:.1e} | {ok} |"
            )

    def graph_checks(self):
        """Capture lqr (forward) and residual_control in CUDA graphs; replay must match eager."""
        torch = self.torch
        if self.device != "cuda":
            self.rows["graphs"].append("| all | n/a (no CUDA in this run) | |")
            return
        # lqr
        N, H, D, T = 256, 8, 16, 64
        xs = make_lqr_inputs(torch, N, H, D, D, "cuda", seed=1)
        Tt = torch.full((N,), T, dtype=torch.int32, device="cuda")
        out = (torch.empty(N, H, D, device="cuda"), torch.empty(N, H, dtype=torch.int32, device="cuda"))
        try:
            with torch.no_grad():
                eager = self.K.lqr(*xs, Tt).u0.clone()
                self.K.lqr(*xs, Tt, out=out)  # warm up / compile outside the capture
                torch.cuda.synchronize()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    self.K.lqr(*xs, Tt, out=out)
                out[0].fill_(float("nan"))
                graph.replay()
                torch.cuda.synchronize()
                ok = bool(torch.equal(out[0], eager))
                ms = self.triton.testing.do_bench(graph.replay, warmup=10, rep=50, return_mode="median")
            self.rows["graphs"].append(f"| lqr {N}x{H}x{D}x{T} | {self.check('graph lqr', ok, 'replay != eager')} | {ms:.4f} ms per replay |")
        except Exception as e:  # report, don't hide
            self.failures.append(f"graph lqr: {e!r}")
            self.rows["graphs"].append(f"| lqr | FAIL {type(e).__name__}: {e} | |")
        # residual_control
        try:
            Hd, S = 4096, 4
            hidden = torch.randn(256, Hd, device="cuda", dtype=torch.bfloat16)
            slot = torch.randint(-1, S, (256,), device="cuda")
            vec, sc = torch.randn(S, Hd, device="cuda"), torch.randn(S, device="cuda")
            modes, pn = torch.tensor([0, 1, 0, 1], device="cuda"), torch.tensor([True, False, False, True], device="cuda")
            expected = hidden.clone()
            self.K.residual_control(expected, slot, vec, sc, modes, pn)
            work = hidden.clone()
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.K.residual_control(work, slot, vec, sc, modes, pn)
            work.copy_(hidden)
            graph.replay()
            torch.cuda.synchronize()
            ok = bool(torch.equal(work, expected))
            self.rows["graphs"].append(f"| residual_control 256x{Hd} bf16 | {self.check('graph residual_control', ok, 'replay != eager')} | |")
        except Exception as e:
            self.failures.append(f"graph residual_control: {e!r}")
            self.rows["graphs"].append(f"| residual_control | FAIL {type(e).__name__}: {e} | |")

    # --------------------------------------------------------------------------------------
    def report(self, command: str) -> Path:
        torch, triton = self.torch, self.triton
        if self.device == "cuda":
            dev_name = torch.cuda.get_device_name()
        else:
            dev_name = f"cpu-interpreter-{platform.machine()}"
        slug = re.sub(r"[^A-Za-z0-9]+", "-", dev_name).strip("-").lower() + ("-smoke" if self.smoke else "")
        lines = [
            f"# Kernel benchmark: {dev_name}",
            "",
            f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
            f"- torch {torch.__version__}, triton {triton.__version__}, python {platform.python_version()}",
            f"- command: `{command}`",
            f"- mode: {'SMOKE (Triton interpreter on CPU, tiny shapes, timings meaningless)' if self.smoke else 'GPU, median of triton.testing.do_bench'}",
            f"- overall: {'PASS' if not self.failures else 'FAIL (' + str(len(self.failures)) + ')'}",
            "",
            "## lqr (forward, fp32 inputs, DU = D, uniform T; reference = PyTorch Riccati loop in fp32 for time, float64 for error)",
            "",
            "| tokens | heads | D | DU | T | torch ref ms | triton ms | speed-up | GFLOP (model) | GFLOP/s | GB/s (inputs once) | rel.err vs f64 | max row rel.err | check |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *self.rows["lqr"],
            "",
            "## residual_control (in place; 8 slots, half additive / half projection)",
            "",
            "| tokens | Hd | dtype | torch ref ms | triton ms | speed-up | GB/s (read+write all rows) | max abs err | check |",
            "|---|---|---|---|---|---|---|---|---|",
            *self.rows["residual_control"],
            "",
            "## branch_scores (chosen log-prob + top-k; reference materialises log_softmax + sort)",
            "",
            "| rows | vocab | k | dtype | torch ref ms | triton ms | speed-up | GB/s (logits once) | max abs err | check |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *self.rows["branch_scores"],
            "",
            "## CUDA-graph capture",
            "",
            "| op | result | note |",
            "|---|---|---|",
            *self.rows["graphs"],
            "",
        ]
        if self.failures:
            lines += ["## Failures", ""] + [f"- {f}" for f in self.failures] + [""]
        out_dir = Path(self.args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"kernels-{slug}.md"
        path.write_text("\n".join(lines))
        return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU + Triton interpreter, tiny shapes, no timing")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for the markdown report")
    parser.add_argument("--only", choices=["lqr", "residual_control", "branch_scores", "graphs"], action="append",
                        help="run only these sections (repeatable)")
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # must precede the kernels' first import to take effect
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, REPO)] + (argv if argv is not None else sys.argv[1:]))

    bench = Bench(args)
    sections = args.only or ["lqr", "residual_control", "branch_scores", "graphs"]
    for name in sections:
        try:
            getattr(bench, {"graphs": "graph_checks"}.get(name, f"bench_{name}"))()
        except Exception as e:
            bench.failures.append(f"{name}: {e!r}")
            traceback.print_exc()
    path = bench.report(command)
    print(path.read_text())
    print(f"wrote {path}")
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
