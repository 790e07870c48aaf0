"""Repository contracts of the README, the front door: CI runs exactly its test command, it stays
short (the rest lives in docs/), and every link in it resolves. What it says is checked where it
matters: its examples in tests/docs/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 150
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _readme_block(heading: str) -> str:
    section = README.read_text().split(f"## {heading}", 1)[1]
    return re.search(r"```bash\n(.*?)\n```", section, re.S).group(1).strip()


def _anchors(page: Path) -> set[str]:
    """Heading ids as Python-Markdown's toc (mkdocs) and GitHub make them for these headings."""
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", page.read_text(), re.M):
        text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
        out.add(re.sub(r"[-\s]+", "-", text))
    return out


def test_ci_runs_the_readme_test_command():
    command = _readme_block("Run the tests")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in ci, f".ci/run must run the README's test command verbatim: {command!r}"


def test_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_LINES, f"README.md has {lines} lines; move detail to docs/ (at most {MAX_LINES})"


def test_readme_links_resolve():
    links = LINK.findall(README.read_text())
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        if link.startswith(("http:", "https:", "mailto:")):
            continue  # outside the repository: not checkable offline
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), f"README.md links to {path}, which does not exist"
        assert not anchor or anchor in _anchors(target), f"README.md links to #{anchor}, not a heading of {path}"
