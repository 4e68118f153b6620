"""Every shipped scenario, each run end to end `--repeats` times, scored.

    .venv/bin/python -m benchmarks.bench_scenarios [--repeats 1] [--only NAME ...]

The test suite runs the boundary pairs (each rule just inside and just outside its limit),
the lifecycle, the compliant day and the scenarios no pair covers (tests/test_sim_scenarios.py);
the one-rule scenarios, whose rules those pairs already cover, and the long days run here, so
that every scenario the project ships is still shown to pass. Each run is `custody sim run`
with its files in RAM (as the suite does); reports PASS per scenario, the false and missed
alerts by rule, and how long each took.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import command_line, write_section  # noqa: E402
from sim.scenario import MissingFootage, find_scenario, list_scenarios, load_scenario  # noqa: E402


@dataclass
class Outcome:
    """One scenario's runs."""

    name: str
    passed: int = 0
    runs: int = 0
    wall_s: list[float] = field(default_factory=list)
    false: list[str] = field(default_factory=list)  # "rule subject"
    missed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_once(name: str, out: Outcome) -> None:
    """`custody sim run NAME` once, scored into `out`."""
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else None
    d = Path(tempfile.mkdtemp(prefix="bench-scenario-", dir=base))
    t0 = time.monotonic()
    try:
        score = d / "score.json"
        r = subprocess.run([sys.executable, "-m", "custody", "sim", "run", name, "--json",
                            str(score), "--workdir", str(d / "run")], cwd=ROOT,
                           capture_output=True, text=True, timeout=3600, check=False)
        out.runs += 1
        out.wall_s.append(time.monotonic() - t0)
        if not score.exists():
            out.errors.append(f"no scorecard (exit {r.returncode}): {r.stderr[-300:]}")
            return
        s = json.loads(score.read_text())
        out.false += [f"{a['rule']} {a.get('detainee') or a.get('room')}" for a in s["false"]]
        out.missed += [f"{a['rule']} {a.get('detainee') or a.get('room')}" for a in s["missed"]]
        out.passed += int(r.returncode == 0 and not s["false"] and not s["missed"])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> int:
    """Run the scenarios and write the section."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--only", nargs="*", default=None, help="these scenarios only")
    args = ap.parse_args()
    names = args.only or [p.stem for p in list_scenarios()]
    outcomes = []
    for name in names:
        try:
            load_scenario(find_scenario(name))
        except MissingFootage as exc:
            print(f"{name}: skipped ({exc})", flush=True)
            continue
        o = Outcome(name)
        for _ in range(args.repeats):
            run_once(name, o)
        outcomes.append(o)
        print(f"{name}: PASS {o.passed}/{o.runs} ({max(o.wall_s) / 60:.1f} min)"
              + (f" false {o.false}" if o.false else "") + (f" missed {o.missed}" if o.missed
                                                            else "")
              + (f" {o.errors}" if o.errors else ""), flush=True)
    rows = "\n".join(
        f"| {o.name} | {o.passed}/{o.runs} | {sorted(o.wall_s)[len(o.wall_s) // 2]:.0f} s | "
        f"{', '.join(o.false) or '-'} | {', '.join(o.missed) or '-'} |" for o in outcomes)
    total = sum(o.runs for o in outcomes)
    passed = sum(o.passed for o in outcomes)
    load = os.getloadavg()
    body = ("Each shipped scenario run end to end (`custody sim run`, files in RAM) "
            f"{args.repeats} time(s).\n\n"
            "| scenario | PASS | median wall | false alarms | missed |\n|---|---|---|---|---|\n"
            f"{rows}\n\n**PASS in {passed} of {total} runs.** Load average (1/5/15 min) at "
            f"the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} "
            "cores shared with other jobs.")
    write_section("Every shipped scenario", command_line(), body)
    print(body)
    return 0 if passed == total else 1


if __name__ == "__main__":
    sys.exit(main())
