"""Dispatch: the ops fall back to their references where Triton is not installed."""

from __future__ import annotations

import subprocess
import sys

import torch

from ttc_plugins.kernels import _checks


def test_use_triton_needs_triton_installed(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(_checks, "triton_available", lambda: False)
    assert not _checks.use_triton(torch.zeros(1))


def test_ops_import_and_run_without_triton():
    code = (
        "import sys; sys.modules['triton'] = None\n"  # any import of triton now fails
        "import torch\n"
        "from ttc_plugins.kernels import residual_control, branch_scores, lqr\n"
        "h = torch.ones(2, 3); residual_control(h, torch.tensor([0, -1]), torch.ones(1, 3), torch.ones(1),\n"
        "    torch.zeros(1, dtype=torch.int32), torch.zeros(1, dtype=torch.bool))\n"
        "assert h[0].tolist() == [2.0, 2.0, 2.0] and h[1].tolist() == [1.0, 1.0, 1.0]\n"
        "assert branch_scores(torch.tensor([[0.0, 1.0]]), 1).topk_ids.tolist() == [[1]]\n"
    )
    env_code = "import os; os.environ['TRITON_INTERPRET'] = '1'\n" + code
    subprocess.run([sys.executable, "-c", env_code], check=True)
