"""`custody demo` N times at its default speed beside the false-alarm benchmark's load.

    .venv/bin/python -m benchmarks.bench_demo_runs [--runs 10] [--no-load]

Each run is the shipped demo day (sim/scenarios/demo-day.toml, its own speed), its files on
disk beside the repository; beside it run two busy processes and one process writing and
fsyncing to the same disk (benchmarks/bench_false_alarms.py's load). Reports each run's
scorecard (expected, matched, missed, false, refused staff commands) and how many PASS. The
goal (issue 12) is PASS in every run.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_false_alarms import start_load, stop_load  # noqa: E402
from benchmarks.results import command_line, write_section  # noqa: E402

SCORE_RE = re.compile(r"expected (\d+), raised (\d+), matched (\d+), missed (\d+), false (\d+), "
                      r"refused commands (\d+) -> (PASS|FAIL)")


@dataclass
class DemoRun:
    """One demo's outcome."""

    n: int
    load: float  # 1-minute load average before it started (the machine is shared)
    wall_s: float
    score: str  # "expected 3, raised 3, ..." or what went wrong
    passed: bool
    false: list[str]


def run_demo(base: Path, n: int, with_load: bool) -> DemoRun:
    """One `custody demo --plain` with its own work dir on disk."""
    work = Path(tempfile.mkdtemp(prefix=f"demo-{n}-", dir=base))
    load_before = os.getloadavg()[0]
    load = start_load(work) if with_load else []
    t0 = time.monotonic()
    try:
        r = subprocess.run([sys.executable, "-m", "custody", "demo", "--plain", "--workdir",
                            str(work / "run")], cwd=ROOT, capture_output=True, text=True,
                           timeout=3600, check=False)
    finally:
        stop_load(load)
    wall = time.monotonic() - t0
    (work / "demo.out").write_text(r.stdout + r.stderr)
    m = SCORE_RE.search(r.stdout)
    false = [" ".join(line.split()[1:3]) for line in r.stdout.splitlines()
             if line.strip().startswith("FALSE")]
    if m is None:
        return DemoRun(n, load_before, wall, f"no scorecard (exit {r.returncode})", False, false)
    exp, raised, matched, missed, nfalse, refused, verdict = m.groups()
    return DemoRun(n, load_before, wall, f"expected {exp}, raised {raised}, matched {matched}, "
                   f"missed {missed}, false {nfalse}, refused {refused}"
                   + (f" ({', '.join(false)})" if false else ""),
                   verdict == "PASS" and r.returncode == 0, false)


def main() -> int:
    """Run the demos and write the section."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--no-load", action="store_true", help="without the background load")
    args = ap.parse_args()
    base = ROOT / ".bench-tmp"  # on disk, not tmpfs: the fsync load must hit the same disk
    base.mkdir(exist_ok=True)
    runs = []
    for i in range(1, args.runs + 1):
        runs.append(run_demo(base, i, not args.no_load))
        d = runs[-1]
        print(f"run {i}: {d.score} -> {'PASS' if d.passed else 'FAIL'} ({d.wall_s / 60:.1f} "
              f"min, load before {d.load:.1f})", flush=True)
    passed = sum(d.passed for d in runs)
    rows = "\n".join(f"| {d.n} | {d.load:.1f} | {d.wall_s / 60:.1f} min | {d.score} | "
                     f"{'PASS' if d.passed else 'FAIL'} |" for d in runs)
    load = "none" if args.no_load else "2 busy processes + 1 writer fsyncing to the same disk"
    body = (f"`custody demo` at its default speed, files on disk; background load: {load}.\n\n"
            "| run | load before | wall | scorecard | verdict |\n|---|---|---|---|---|\n"
            f"{rows}\n\n**PASS in {passed} of {len(runs)} runs** (goal: all).")
    write_section("Demo day under load", command_line(), body)
    print(body)
    return 0 if passed == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
