"""The ``latest`` nox session's report: run the suites unlocked, then say what moved.

    python integration/latest.py OUT.md LOCK [LOCK ...] -- UNIT_PATHS... -- SMOKE_PATHS...

Runs pytest on the unit paths (in the Triton interpreter) and then on the engine smoke paths, in
this (unlocked) environment, compares every installed distribution with the named locks
(``requirements/<LOCK>.txt``) and writes OUT.md: both pytest summaries and a table of the packages
whose version differs from a lock. Exits non-zero when either run failed.
"""

from __future__ import annotations

import datetime
import os
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


def _pytest(paths: list[str], env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", *paths], capture_output=True, text=True,
                          env=env)
    sys.stdout.write(proc.stdout[-20000:])
    sys.stderr.write(proc.stderr[-5000:])
    lines = proc.stdout.splitlines()
    summary = next((l.strip("= ") for l in reversed(lines) if re.search(r"\d+ (passed|failed)", l)), "no summary")
    return proc.returncode, summary


def main(argv: list[str]) -> int:
    first = argv.index("--")
    second = argv.index("--", first + 1)
    out, locks = Path(argv[0]), argv[1:first]
    unit_paths, smoke_paths = argv[first + 1:second], argv[second + 1:]
    start = time.time()
    unit_rc, unit_summary = _pytest(unit_paths, {**os.environ, "TRITON_INTERPRET": "1"})
    smoke_rc, smoke_summary = _pytest(smoke_paths, dict(os.environ))
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
        f"- unit (`{' '.join(unit_paths)}`): **{unit_summary}** (exit {unit_rc})",
        f"- engine smoke (`{' '.join(smoke_paths)}`): **{smoke_summary}** (exit {smoke_rc})",
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
    return 1 if unit_rc or smoke_rc else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
