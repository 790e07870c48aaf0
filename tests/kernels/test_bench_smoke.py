"""The benchmark script's --smoke mode runs (interpreter, tiny shapes), so the script cannot rot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_kernels.py"


def test_bench_smoke(tmp_path, device, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_kernels_smoke", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    rc = bench.main(["--smoke", "--out", str(tmp_path)])
    reports = list(tmp_path.glob("kernels-*-smoke.md"))
    assert len(reports) == 1
    text = reports[0].read_text()
    assert rc == 0, text
    for section in ("## lqr", "## residual_control", "## branch_scores", "## CUDA-graph capture", "--smoke"):
        assert section in text
    assert "FAIL" not in text
