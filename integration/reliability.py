"""One command for the reliability figures: runs the reliability tests against the newest release
of every engine (over each engine's own OpenAI server, tiny model) and prints what a user would
want to know: cases tried, how they were answered (2xx / 4xx / 5xx / timeouts), engine crashes,
KV left held, memory before and after.

    python3.11 integration/reliability.py            # the CI-sized run (what CI runs, minutes)
    python3.11 integration/reliability.py --long     # 5,000 fuzz cases and 5,000 mixed requests per engine
    python3.11 integration/reliability.py --write    # also writes integration/results/reliability.md

The tests (``-k`` below): the table of bad ``ttc`` sections and the fuzzer (every bad input a 4xx
naming its field, the server alive every 50 cases), faults injected by a third-party plugin
(``integration/conformance/test_faults.py``), load and abandoned requests
(``integration/conformance/test_load.py``), client disconnects, searches and beams under a small
KV pool (``test_kv_pressure.py``). Each writes its figures to
``$TTC_RELIABILITY_OUT``; this script gathers them. Engine suites run one after the other (never two
at once on a 2-core box), through the same nox sessions as CI.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "integration" / "results" / "reliability.md"
SELECT = "bad_ttc or fuzz or test_faults or test_load or disconnect or kv_pressure or keeps_serving or same_tokens"
LONG = {"TTC_FUZZ_EXAMPLES": "5000", "TTC_LOAD_REQUESTS": "5000"}


def newest(engine: str) -> str:
    data = tomllib.loads((ROOT / "ttc_plugins" / "engines" / f"{engine}.toml").read_text())
    tested = [r["version"] for r in data["releases"] if r.get("status") == "tested"]
    return max(tested, key=lambda v: tuple(int(x) for x in v.split(".")))


def run_engine(engine: str, out: Path, env: dict[str, str]) -> dict:
    session = f"{engine}-{newest(engine)}"
    log = out / f"{engine}.log"
    start = time.time()
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "nox", "-s", session, "--", "-k", SELECT],
                            cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    text = log.read_text()
    summary = next((line for line in reversed(text.splitlines()) if " passed" in line or " failed" in line), "")
    return {"session": session, "rc": rc, "minutes": round((time.time() - start) / 60, 1), "pytest": summary.strip("= ")}


def figures(out: Path, engine: str, name: str) -> dict:
    path = out / f"{name}-{engine}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _fraction(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def table(out: Path, runs: dict[str, dict]) -> list[str]:
    rows = ["| | " + " | ".join(runs) + " |", "|---" * (len(runs) + 1) + "|"]

    def row(label: str, value) -> None:
        rows.append(f"| {label} | " + " | ".join(str(value(e)) for e in runs) + " |")

    row("session (pytest)", lambda e: f"{runs[e]['session']}: {runs[e]['pytest']} ({runs[e]['minutes']} min)")
    row("fuzzed bad/odd requests", lambda e: figures(out, e, "fuzz").get("cases", "-"))
    row("  answered 2xx / 4xx / 5xx / timeout", lambda e: "{} / {} / {} / {}".format(
        *(figures(out, e, "fuzz").get(k, "-") for k in ("2xx", "4xx", "5xx", "timeouts"))))
    row("  4xx not naming a field", lambda e: figures(out, e, "fuzz").get("4xx without a field", "-"))
    row("  health checks passed (plain + search, every 50)", lambda e: figures(out, e, "fuzz").get("health checks passed", "-"))
    row("faults injected (raising plugin, non-finite control)", lambda e: figures(out, e, "faults").get("faults injected", "-"))
    row("  failed alone, with an error", lambda e: figures(out, e, "faults").get("failed alone with an error", "-"))
    row("  requests beside them unchanged", lambda e: "{} of {}".format(
        figures(out, e, "faults").get("requests beside them unchanged", "-"),
        figures(out, e, "faults").get("requests beside them", "-")))
    row("mixed requests (plain, steered, decoded, search, beam, abandoned)", lambda e: figures(out, e, "load").get("requests", "-"))
    row("  not answered 2xx (abandoned ones excepted)", lambda e: sum(
        n for k, n in figures(out, e, "load").get("outcomes", {}).items() if not k.endswith((":ok", ":abandoned")))
        if figures(out, e, "load") else "-")
    row("  wall time (s), concurrency", lambda e: "{}, {}".format(figures(out, e, "load").get("wall_s", "-"),
                                                                   figures(out, e, "load").get("concurrency", "-")))
    row("  KV in use: idle / peak / after (fraction of the pool)", lambda e: "{} / {} / {}".format(
        *(_fraction(figures(out, e, "load").get(k)) for k in ("kv_in_use_idle", "kv_in_use_peak", "kv_in_use_after"))))
    row("  server RSS after warm-up -> after (MiB)", lambda e: "{} -> {} ({:+.1%})".format(
        figures(out, e, "load").get("rss_before_mib"), figures(out, e, "load").get("rss_after_mib"),
        figures(out, e, "load").get("rss_growth", 0.0)) if figures(out, e, "load") else "-")
    row("clients leaving mid-search / mid-beam / mid-stream: s until KV idle again", lambda e: " / ".join(
        str(figures(out, e, "disconnects").get(k, "-")) for k in ("search", "beam", "stream")))
    row("engine crashes (suite failed)", lambda e: 0 if runs[e]["rc"] == 0 else "see log")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long", action="store_true", help="the long run (5,000 fuzz cases, 5,000 mixed requests)")
    ap.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(ROOT)}")
    ap.add_argument("--engines", default="vllm,sglang")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"load average at the start: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        env = {**os.environ, "TTC_RELIABILITY_OUT": str(out), **(LONG if args.long else {})}
        runs = {}
        for engine in args.engines.split(","):
            runs[engine] = run_engine(engine, out, env)
            print(f"{engine}: {runs[engine]}", flush=True)
        rows = table(out, runs)
        logs = {e: (out / f"{e}.log").read_text() for e in runs}
    print("\n".join(rows))
    ok = all(r["rc"] == 0 for r in runs.values())
    if args.write:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        cmd = "python3.11 integration/reliability.py" + (" --long" if args.long else "") + " --write"
        OUT.write_text("\n".join([
            "# Reliability figures", "",
            f"Command: `{cmd}` (commit {commit}, {datetime.date.today().isoformat()})", "",
            f"- machine: {platform.machine()} / {os.cpu_count()} CPUs, {platform.platform()}; no GPU",
            f"- load average at the start: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}",
            "- tiny random Llama (float32), each engine's own OpenAI server started the usual way with the plugin", "",
            *rows, "",
            "Failures, if any, are in the pytest summary of the session; their logs are not kept here." if ok else
            "**Some tests failed**: " + "; ".join(f"{e}: {r['pytest']}" for e, r in runs.items() if r["rc"]), "",
        ]))
        for engine, text in logs.items():
            if runs[engine]["rc"]:
                (OUT.parent / "logs" / f"reliability-{engine}.log").write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
