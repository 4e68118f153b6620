"""False alarms per 100 detainee-hours on compliant days under background load.

    .venv/bin/python -m benchmarks.bench_false_alarms [--days 3] [--hours 2] [--detainees 8]
        [--speed 60] [--seed 1] [--no-load]

Each day is a random day in the demo centre (sites/demo-centre.toml) with no injected
violation, so every alert it raises is a false alarm. Beside it run two busy processes and
one process writing and fsyncing to the same disk as the day's files (journal, outboxes): the
load that used to turn transport lag into false recording gaps. Reports false alarms per 100
detainee-hours (detainee-hours: the planned stays) and the longest transport lag the
supervisor saw (node stamp to journal, custody time, from its log). The goal is 0.
"""

import argparse
import json
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

from benchmarks.results import command_line, write_section  # noqa: E402

BUSY = "while True: pass"
FSYNC = """
import os, sys, time
path = sys.argv[1]
with open(path, "wb") as f:
    while True:
        f.write(os.urandom(65536))
        f.flush()
        os.fsync(f.fileno())
        if f.tell() > 64 << 20:
            f.seek(0)
        time.sleep(0.005)
"""
LAG_RE = re.compile(r"longest transport lag: (\d+) ms")


def scenario(path: Path, seed: int, detainees: int, hours: float, speed: float) -> None:
    """Write a compliant random day."""
    path.write_text(f"""[scenario]
description = "compliant random day (bench_false_alarms)"
site = "demo-centre"
speed = {speed:g}
seed = {seed}

[random]
detainees = {detainees}
hours = {hours:g}
violation_rate = 0.0
""")


def start_load(workdir: Path) -> list[subprocess.Popen[bytes]]:
    """Two busy loops and one fsync'ing writer on the day's disk."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2)]
    procs.append(subprocess.Popen([sys.executable, "-c", FSYNC, str(workdir / "load.bin")]))
    return procs


def stop_load(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop the load processes (only those we started)."""
    for p in procs:
        p.kill()
        p.wait()


@dataclass
class Day:
    """One day's outcome."""

    seed: int
    det_hours: float
    wall_s: float
    false: list[str]
    lag_ms: int
    load: float  # 1-minute load average when the day started (the machine is shared)


def run_day(tmp: Path, seed: int, args: argparse.Namespace) -> Day:
    """One day: its score, detainee-hours and the supervisor's longest transport lag."""
    from sim.scenario import load_scenario

    day = tmp / f"day-{seed}"
    day.mkdir()
    toml = day / "day.toml"
    scenario(toml, seed, args.detainees, args.hours, args.speed)
    sc = load_scenario(toml)
    det_hours = sum(s.stay_s for s in sc.stays) / 3600
    workdir = day / "run"
    machine_load = os.getloadavg()[0]
    load = [] if args.no_load else start_load(day)
    t0 = time.monotonic()
    try:
        subprocess.run([sys.executable, "-m", "custody", "sim", "run", str(toml), "--json",
                        str(day / "score.json"), "--workdir", str(workdir)], cwd=ROOT,
                       check=False, stdout=subprocess.DEVNULL)
    finally:
        stop_load(load)
    wall = time.monotonic() - t0
    score = json.loads((day / "score.json").read_text())
    lags = [int(m) for m in LAG_RE.findall((workdir / "supervisor.log").read_text())]
    return Day(seed, det_hours, wall,
               [f"{f['rule']} {f['detainee'] or f['room']}" for f in score["false"]],
               max(lags, default=-1), machine_load)


def main() -> int:
    """Run the days and write the section."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--detainees", type=int, default=8)
    ap.add_argument("--speed", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1, help="first seed; day i uses seed + i")
    ap.add_argument("--no-load", action="store_true", help="without the background load")
    args = ap.parse_args()
    # On disk beside the repository, not tmpfs: the fsync load must hit the same disk.
    base = ROOT / ".bench-tmp"
    base.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="false-alarms-", dir=base))
    days = [run_day(tmp, args.seed + i, args) for i in range(args.days)]
    det_hours = sum(d.det_hours for d in days)
    false = sum(len(d.false) for d in days)
    rate = 100 * false / det_hours if det_hours else float("nan")
    rows = "\n".join(
        f"| {d.seed} | {d.load:.1f} | {d.det_hours:.1f} | {d.wall_s / 60:.1f} min | "
        f"{len(d.false)} | {d.lag_ms / 1000:.1f} s | {', '.join(d.false) or '-'} |"
        for d in days)
    load = "none" if args.no_load else "2 busy processes + 1 writer fsyncing to the same disk"
    body = (
        f"{args.days} compliant random days, {args.detainees} detainees, {args.hours:g} h each, "
        f"demo centre, x{args.speed:g}, files on disk; background load: {load}.\n\n"
        "| seed | load before | detainee-hours | wall | false alarms | longest transport lag "
        "(custody) | which |\n|---|---|---|---|---|---|---|\n"
        f"{rows}\n\n**{false} false alarms in {det_hours:.1f} detainee-hours = {rate:.1f} per "
        "100 detainee-hours** (goal 0). Transport lag: node stamp to journal, custody time, "
        "the supervisor's own figure (its log at exit)."
    )
    write_section("False alarms under load", command_line(), body)
    print(body)
    return 0 if false == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
