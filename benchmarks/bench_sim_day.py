"""A random custody day of 8 simulated hours, 15 rooms, 10 detainees: wall time and score.

    .venv/bin/python -m benchmarks.bench_sim_day [--speed 60] [--seed 7]

Runs sim/scenarios/random-day.toml through `custody sim run` (broker, supervisor, one agent
per room node, virtual devices) and writes the wall time and the scorecard to RESULTS.md.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import command_line, write_section  # noqa: E402


def main() -> int:
    """Run the day and write the section."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--speed", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-sim-")) / "score.json"
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "custody", "sim", "run", "random-day",
                        "--speed", str(args.speed), "--seed", str(args.seed), "--json",
                        str(out)], cwd=ROOT, check=False)
    wall = time.monotonic() - t0
    s = json.loads(out.read_text())
    lat = sorted(s["latency_ms"])
    med = lat[len(lat) // 2] / 1000 if lat else float("nan")
    body = (
        "| simulated | rooms / nodes | detainees | clock | wall time | expected | matched | "
        "missed | false | median latency (custody s) |\n|---|---|---|---|---|---|---|---|---|---|\n"
        f"| 8 h | 15 / 15 | 10 | x{args.speed:g} | {wall / 60:.1f} min | {len(s['expected'])} | "
        f"{len(s['matched'])} | {len(s['missed'])} | {len(s['false'])} | {med:.1f} |\n\n"
        f"Seed {args.seed}; exit status {r.returncode} ({'pass' if s['passed'] else 'FAIL'}). "
        "Wall time includes starting and stopping the broker, the supervisor and 15 agents. "
        "Latency: custody seconds from the planned start of each violation to the alert's "
        "`raised_ts` (it includes each rule's grace)."
    )
    if s["false"]:
        body += "\n\nFalse alerts: " + ", ".join(
            f"{f['rule']} {f['detainee'] or f['room']}" for f in s["false"])
    if s["missed"]:
        body += "\n\nMissed: " + ", ".join(
            f"{m['rule']} {m['detainee'] or m['room']}" for m in s["missed"])
    write_section("Simulated custody day", command_line(), body)
    print(body)
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
