"""The PRM on an in-process SGLang engine (``SGLangRewardModel.over_engine``), in a child process
(the suite's own in-process engine is a generator): per-step probabilities equal the HF forward of
the same tiny PRM weights. The server path (``reward_models`` in ``TTC_SGLANG_CONFIG``) is tested in
test_search_server_sglang.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ttc_plugins.scoring.prm import QWEN_STEP_TAG, prm_text
from ttc_plugins.testing.memory_prm import MemoryRewardModel

HERE = Path(__file__).resolve().parent
TEXTS = [prm_text("Problem: 3 + 4 = ?\n", ["3 + 4 = 7", "so the answer is 7", "done"], QWEN_STEP_TAG),
         prm_text("Q:\n", ["one"], QWEN_STEP_TAG)]


def test_prm_on_an_in_process_engine_matches_hf(prm_dir, run_dir):
    texts_path, out_path = run_dir / "prm-texts.json", run_dir / "prm-out.json"
    texts_path.write_text(json.dumps(TEXTS))
    proc = subprocess.run([sys.executable, str(HERE / "ttc_sglang_engine.py"), "prm", prm_dir, str(texts_path),
                           str(out_path)], capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(out_path.read_text())
    assert out["step_tag"] == QWEN_STEP_TAG
    want = MemoryRewardModel.from_pretrained(prm_dir).step_rewards(TEXTS)
    assert [len(r) for r in out["rewards"]] == [3, 1]
    for got, ref in zip(out["rewards"], want):
        assert got == pytest.approx(ref, abs=1e-4)
