"""Every example in README.md and docs/ runs as written, on the tiny random model standing in for
the default model; an example that needs an engine, the network or CI (marked, see ``doc_blocks``)
must at least parse, with every ``ttc`` object in it valid."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from doc_blocks import NEEDS, Block, all_blocks
from ttc_objects import from_json, from_python, from_shell

BLOCKS = all_blocks()
RUNNABLE = [b for b in BLOCKS if b.needs is None and b.name is None]
MARKED = [b for b in BLOCKS if b.needs is not None]
NAMED = {b.name: b for b in BLOCKS if b.name is not None}
LANGS = {"bash", "python", "json", "toml"}
TIMEOUT_S = 900
# the tiny Llama of tests/test_cli.py: seconds to build, milliseconds per token
TINY = dict(hidden=64, layers=2, heads=4, kv_heads=2, vocab=1024)


def _ids(blocks: list[Block]) -> list[str]:
    return [b.id for b in blocks]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """An empty working directory whose ttc cache holds the tiny model as the default model."""
    pytest.importorskip("transformers")
    from ttc_plugins.model import DEFAULT_MODEL
    from ttc_plugins.model.cache import MANIFEST_NAME, build_once
    from ttc_plugins.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("docs-examples")
    src = build_tiny_llama(root / "tiny", **TINY)

    def builder(d: Path) -> dict:
        for f in src.iterdir():
            if f.name != MANIFEST_NAME:
                shutil.copy(f, d / f.name)
        return {"name": DEFAULT_MODEL.name, "recipe": DEFAULT_MODEL.recipe, "source_sha256": DEFAULT_MODEL.gguf_sha256}

    build_once(root / "cache" / "models" / DEFAULT_MODEL.name, builder)
    (root / "cwd").mkdir()
    return root


def _run(block: Block, workdir: Path) -> str:
    """Run ``block`` as a user would (``ttc`` and ``python`` of this environment first on PATH)."""
    # a user's shell has no TRITON_INTERPRET=1 (the unit session sets it for the kernel tests; under
    # it every CPU op would run its Triton kernel in the interpreter, minutes for `ttc adapter train`)
    inherited = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env = {**inherited, "TTC_CACHE_DIR": str(workdir / "cache"), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "200",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if block.lang == "bash":
        cmd = ["bash", "-euo", "pipefail", "-c", block.code]
    else:
        script = workdir / f"example_{block.line}.py"
        script.write_text(block.code)
        cmd = [sys.executable, str(script)]
    proc = subprocess.run(cmd, cwd=workdir / "cwd", env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{block.id} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_every_block_is_an_example_the_tests_know_how_to_check():
    assert RUNNABLE and MARKED and BLOCKS
    for b in BLOCKS:
        assert b.lang in LANGS, f"{b.id}: fence language {b.lang!r}; one of {sorted(LANGS)} (or mermaid)"
        assert b.needs is None or b.needs in NEEDS, f"{b.id}: <!-- needs: {b.needs} -->; known: {sorted(NEEDS)}"
    assert set(NAMED) == {"ban-tokens"}, "each <!-- example: NAME --> needs its own test below"


@pytest.mark.parametrize("block", RUNNABLE, ids=_ids(RUNNABLE))
def test_example_runs_as_written(block, workdir):
    if block.lang == "json":
        json.loads(block.code)
    elif block.lang == "toml":
        tomllib.loads(block.code)
    else:
        _run(block, workdir)


def test_ban_tokens_example_changes_the_output(workdir):
    out = _run(NAMED["ban-tokens"], workdir)
    plain, banned = (ast.literal_eval(re.search(rf"^{label}:\s+(\[[\d, ]*\])", out, re.M).group(1))
                     for label in ("plain", "banned"))
    assert plain and banned
    assert banned[0] != plain[0] and plain[0] not in banned, out


@pytest.mark.parametrize("block", MARKED, ids=_ids(MARKED))
def test_marked_example_parses_and_its_ttc_objects_validate(block, pm, tmp_path):
    if block.lang == "bash":
        script = tmp_path / "example.sh"
        script.write_text(block.code)
        check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, f"{block.id}: {check.stderr}"
        objects = from_shell(block.code)
    elif block.lang == "python":
        compile(block.code, block.id, "exec")
        objects = from_python(block.code)
    elif block.lang == "json":
        objects = from_json(block.code)
    else:
        tomllib.loads(block.code)
        objects = []
    for obj in objects:
        assert pm.parse_params(obj) is not None, f"{block.id}: {obj}"


def test_the_marked_examples_carry_ttc_objects_to_validate():
    """The extraction above finds the requests in the engine examples (a regression guard for it)."""
    found = {"bash": from_shell, "python": from_python, "json": from_json}
    objects = [o for b in MARKED if b.lang in found for o in found[b.lang](b.code)]
    kinds = {k for o in objects for k in o}
    assert kinds == {"control", "decoding", "search", "beam"} and len(objects) >= 15, objects
