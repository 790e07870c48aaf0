"""``benchmarks/sizing.py``: KV bytes per token from a model's config, and the per-search sizing
arithmetic over a ``ttc bench`` run's rows (the script behind ``results/sizing-smollm2/``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sizing.py"
sys.path.insert(0, str(SCRIPT.parent))

import sizing  # noqa: E402


def test_kv_bytes_per_token_of_the_tiny_model_is_what_vllm_allocates():
    pytest.importorskip("transformers")
    from ttc_plugins.testing.tiny_model import build_tiny_llama

    shape = sizing.model_from_config(build_tiny_llama(), 4)
    # the vLLM suite's small-KV server holds exactly 1,024 tokens in 1,024 x this many bytes
    # (integration/vllm/fixtures.py KV_BYTES_PER_TOKEN)
    assert sizing.kv_bytes_per_token(*shape) == 4 * 2 * 2 * 32 * 4


def _row(**kw):
    return {"kind": "search", "method": "beam", "width": 4, "n": 10, "peak_kv_tokens_mean": 256.0,
            "peak_kv_tokens_unshared_mean": 1024.0, "model_calls": 300, "tokens_generated": 2000, **kw}


def test_searches_per_gpu_and_router_requests_follow_the_measured_figures():
    (s,) = sizing.sizing_rows([_row(), _row(kind="greedy"), _row(kind="oracle")], {"m": (1, 1, 64, 2)}, 1.0)
    assert s["kv_bytes_per_token"] == 256
    assert s["kv_mib_shared"] == 256 * 256 / 2**20
    assert s["searches_per_gpu"] == 2**30 // (256 * 256) and s["searches_per_gpu_unshared"] == 2**30 // (1024 * 256)
    assert s["in_flight"] == {g: g * s["searches_per_gpu"] for g in sizing.GPUS}
    assert s["engine_requests_per_search"] == 30.0


def test_the_script_writes_its_table_with_its_command(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"config": {"model": "unused"}, "rows": [_row()]}))
    out = tmp_path / "sizing.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--bench", str(bench), "--model", "toy=2,2,64,2",
                           "--write", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.startswith("Command: `python benchmarks/sizing.py --bench ")
    assert "| toy (1,024) | beam | 4 | 256 (1024) |" in text and "| Llama-3.1-8B bf16 (131,072) | beam |" in text
