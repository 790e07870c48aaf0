"""The ``latest`` nox session's report: run the suites unlocked, then say what moved.

    python integration/latest.py OUT.md LOCK [LOCK ...] -- PYTEST_ARGS...

Runs pytest on PYTEST_ARGS in this (unlocked) environment, then compares every installed
distribution with the named locks (``requirements/<LOCK>.txt``) and writes OUT.md: the pytest
summary and a table of the packages whose version differs from a lock. Exits with pytest's status.
"""

from __future__ import annotations

import datetime
import platform
import re
import subprocess
import sys
import time
from importlib.metadata import distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / f"{name}.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def main(argv: list[str]) -> int:
    sep = argv.index("--")
    out, locks, pytest_args = Path(argv[0]), argv[1:sep], argv[sep + 1:]
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", *pytest_args], capture_output=True, text=True)
    sys.stdout.write(proc.stdout[-20000:])
    sys.stderr.write(proc.stderr[-5000:])
    summary = next((l.strip("= ") for l in reversed(proc.stdout.splitlines()) if re.search(r"\d+ (passed|failed)", l)), "no summary")
    installed = {_norm(d.metadata["Name"]): d.version for d in distributions()}
    rows = []
    for lock in locks:
        for name, pinned in sorted(read_lock(lock).items()):
            now = installed.get(name)
            if now != pinned:
                rows.append(f"| {lock} | {name} | {pinned} | {now or 'not installed'} |")
    lines = [
        "# `nox -s latest`: the newest allowed versions, unlocked",
        "",
        f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'}"
        f" (Python {platform.python_version()}, {platform.machine()}), {time.time() - start:.0f} s.",
        "",
        "Command: `python3.11 -m nox -s latest`",
        "",
        f"pytest ({' '.join(pytest_args)}): **{summary}** (exit {proc.returncode})",
        "",
        f"## What moved against the locks ({len(rows)} packages)",
        "",
        "| lock | package | locked | latest |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
    out.write_text("\n".join(lines))
    print(f"[latest] wrote {out}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
