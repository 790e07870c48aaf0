"""Run every engine release's integration session, one after the other, and write the table.

    python3.11 integration/matrix.py [SESSION ...]    # default: every session tagged "matrix"

Sessions run sequentially (never two engine suites at once on a 2-core box). The result, release
x suite -> passed / failed / skipped and minutes, goes to ``integration/results/matrix.md``; rows of
sessions not run this time are kept from the previous table. The releases are
``ttc_plugins/engines/{vllm,sglang}.toml``: a release that fails here is marked there as dropped or
untested, with the reason, by hand.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "integration" / "results" / "matrix.md"
LOGS = ROOT / "integration" / "results" / "logs"
HEADER = "| session | suite | result | passed | failed | skipped | minutes | commit |"


def sessions_tagged(tag: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "nox", "-t", tag, "--list-sessions"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [m.group(1) for m in re.finditer(r"^\* (\S+)", out, re.M)]  # selected by the tag


def _count(text: str, word: str) -> int:
    m = re.findall(rf"(\d+) {word}", text)
    return int(m[-1]) if m else 0


def run(session: str) -> str:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / (re.sub(r"[^A-Za-z0-9.]+", "-", session).strip("-") + ".log")
    start = time.time()
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "nox", "-s", session], cwd=ROOT, stdout=f,
                            stderr=subprocess.STDOUT).returncode
    minutes = (time.time() - start) / 60
    text = log.read_text()
    suite = "integration/refused" if session.startswith("refused") else (
        "conformance + integration/vllm" if session.startswith("vllm") else "conformance + integration/sglang")
    result = "passed" if rc == 0 else "failed"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    # the results folder itself is what this run writes: not a change of the code under test
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!integration/results"],
                           cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    row = (f"| {session} | {suite} | {result} | {_count(text, 'passed')} | {_count(text, 'failed') + _count(text, 'error')} "
           f"| {_count(text, 'skipped')} | {minutes:.1f} | {commit}{'+changes' if dirty else ''} |")
    print(row, flush=True)
    return row


def dropped_releases() -> list[str]:
    """The releases the engine files drop, with their reasons (they have no session)."""
    import tomllib

    lines = []
    for engine in ("vllm", "sglang"):
        data = tomllib.loads((ROOT / "ttc_plugins" / "engines" / f"{engine}.toml").read_text())
        lines += [f"- {engine} {r['version']}: {r['reason']}" for r in data["releases"] if r["status"] == "dropped"]
    return lines


def main(argv: list[str]) -> int:
    wanted = argv or sessions_tagged("matrix")
    old = {}
    if OUT.exists():
        for line in OUT.read_text().splitlines():
            if line.startswith("| ") and not line.startswith(("| session", "|---")) and line.count("|") == 9:
                old[line.split("|")[1].strip()] = line
    load = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    rows = {s: run(s) for s in wanted}
    order = sessions_tagged("matrix")
    table = [rows.get(s) or old.get(s) or f"| {s} | | not run | | | | | |" for s in order]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join([
        "# Engine release matrix",
        "",
        "Every supported release runs the same integration suite, unchanged, in its own environment",
        "(`requirements/<session>.txt`); `refused(engine=...)` checks that a release outside the range is",
        "refused at start with the range named. Rows of sessions not run in the last run are kept from",
        "earlier runs; `commit` says which code each row ran.",
        "",
        f"Last run: {started:%Y-%m-%d %H:%M} UTC, sessions {', '.join(wanted)}; load average at start "
        f"{load[0]:.2f}; 2-core CPU machine.",
        "",
        "Command: `python3.11 integration/matrix.py` (all) or `python3.11 integration/matrix.py SESSION ...`",
        "",
        HEADER,
        "|---|---|---|---|---|---|---|---|",
        *table,
        "",
        "## Dropped releases (no session; the reason is in `ttc_plugins/engines/<engine>.toml`)",
        "",
        *dropped_releases(),
        "",
    ]))
    print(f"[matrix] wrote {OUT}")
    return 0 if all(" passed " in r for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
