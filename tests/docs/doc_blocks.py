"""The fenced code blocks of README.md and docs/, with the marker that says how the tests treat them.

A block runs in the unit tests as written unless the line before its fence is a marker:

    <!-- needs: vllm -->        it needs something the unit session has not (NEEDS): it must parse,
                                and every ``ttc`` object in it must validate
    <!-- example: NAME -->      it runs, and a test named after it checks what it printed

Pages under docs/ that only include other files (``--8<--``) hold no blocks of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: what a marked block needs; anything else in a ``needs`` marker is a typo
NEEDS = {
    "vllm": "a vLLM engine or its OpenAI server",
    "sglang": "an SGLang engine or server",
    "network": "package downloads",
    "ci": "the whole nox run (it is the test command itself)",
}
#: fences that are not examples (diagrams)
NOT_CODE = {"mermaid"}

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*(needs|example):\s*([\w-]+)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    code: str
    needs: str | None = None
    name: str | None = None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks_of(path: Path) -> list[Block]:
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        kind, value = marker.groups() if marker else (None, None)
        out.append(Block(path, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2),
                         needs=value if kind == "needs" else None, name=value if kind == "example" else None))
    return out


def all_blocks() -> list[Block]:
    return [b for p in pages() for b in blocks_of(p) if b.lang not in NOT_CODE]
