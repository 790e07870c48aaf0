"""``benchmarks/bench_families.py`` runs end to end (tiny model, transformers reference engine), so
the script behind ``results/families-smollm2.md`` cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_families.py"


def test_bench_families_smoke(tmp_path):
    pytest.importorskip("transformers")
    report, dump = tmp_path / "families.md", tmp_path / "families.jsonl"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", "tiny", "--engine", "hf", "--n", "2",
                           "--families", "add-sub,compare", "--write", str(report), "--dump", str(dump)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = report.read_text()
    assert "| add-sub | 0/2 " in text or "| add-sub | 1/2 " in text or "| add-sub | 2/2 " in text
    assert "| compare |" in text and "dev split" in text and "engine: hf (transformers" in text
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    assert [r["family"] for r in rows] == ["add-sub", "add-sub", "compare", "compare"]
    assert all(set(r) >= {"question", "answer", "text", "correct"} for r in rows)
