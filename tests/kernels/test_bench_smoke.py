"""The benchmark script's --smoke mode runs (interpreter, tiny shapes), so the script cannot rot.

It runs as a script, in its own process, the way it is used: its compile and graph-capture
checks then leave no state behind in the test process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_kernels.py"


def test_bench_smoke(tmp_path):
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    reports = list(tmp_path.glob("kernels-*-smoke.md"))
    assert len(reports) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = reports[0].read_text()
    assert proc.returncode == 0, text + proc.stderr[-3000:]
    for section in ("## lqr", "## residual_control", "## branch_scores", "## CUDA-graph capture", "--smoke"):
        assert section in text
    assert "FAIL" not in text
