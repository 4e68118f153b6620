"""Soak: a 200-room site's traffic into the real supervisor for 10 minutes; memory at start
and end (supervisor and broker), events sent against events journaled.

The rooms are simulated nodes (benchmarks/fleet.py) sending sealed, sequenced events
(camera heartbeats, person counts, doors) at `--per-room` events/s each.

    .venv/bin/python -m benchmarks.bench_soak [--rooms 200] [--minutes 10] [--per-room 1]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.fleet import Fleet, write_fleet
from benchmarks.results import command_line, write_section
from custody.broker import BrokerConfig, Mosquitto
from tests.fault_support import Proc, journal_count, supervisor_argv, wait_until


def status_kb(pid: int, key: str) -> int:
    """A kB figure of /proc/<pid>/status (VmRSS, VmHWM, ...); 0 when the process lacks it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB."""
    return status_kb(pid, "VmRSS") / 1024


def main() -> int:
    """Run the soak and write the section."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rooms", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--per-room", type=float, default=1.0, help="events/s per room")
    args = ap.parse_args()
    rate = args.rooms * args.per_room
    with tempfile.TemporaryDirectory(prefix="custody-soak-") as tmp, \
            Mosquitto(BrokerConfig()) as broker:
        d = Path(tmp)
        site = write_fleet(d, "soak-site", args.rooms, broker_port=broker.port)
        db = d / "journal.db"
        sup = Proc(supervisor_argv(site, d / "keys.toml", db, broker.host, broker.port),
                   d / "supervisor.log").start()
        assert broker.proc is not None
        wait_until(lambda: db.exists(), 30, "the supervisor's journal", sup)
        time.sleep(2.0)
        fleet = Fleet(broker.host, broker.port, "soak-site", args.rooms, rate).start()
        samples: list[tuple[float, float, float]] = []
        t0 = time.monotonic()
        try:
            time.sleep(20.0)  # warm-up: caches, first checkpoint
            start = (rss_mb(sup.pid), rss_mb(broker.proc.pid))
            while time.monotonic() - t0 < args.minutes * 60:
                time.sleep(10.0)
                samples.append((time.monotonic() - t0, rss_mb(sup.pid), rss_mb(broker.proc.pid)))
                if not sup.alive():
                    raise RuntimeError("supervisor died: " + sup.text()[-2000:])
            end = (rss_mb(sup.pid), rss_mb(broker.proc.pid))
            sent = fleet.stop()
            elapsed = time.monotonic() - t0
            wait_until(lambda: journal_count(db, "event") >= sent, 120,
                       "every sent event journaled", sup)
            journaled = journal_count(db, "event")
        finally:
            fleet.stop()
            sup.stop()
        size_mb = db.stat().st_size / 2**20
    peak_sup = max(s[1] for s in samples)
    # Growth over the second half, per minute: flat means bounded.
    half = [s for s in samples if s[0] >= args.minutes * 30]
    slope = ((half[-1][1] - half[0][1]) / ((half[-1][0] - half[0][0]) / 60)
             if len(half) > 1 and half[-1][0] > half[0][0] else 0.0)
    print(f"sent {sent}, journaled {journaled}, supervisor RSS {start[0]:.0f} -> {end[0]:.0f} MB "
          f"(peak {peak_sup:.0f}), broker {start[1]:.0f} -> {end[1]:.0f} MB")
    write_section("Soak: 200 rooms", command_line(), (
        f"{args.rooms} simulated room nodes, {args.per_room:g} event/s each ({rate:.0f}/s), "
        f"**{args.minutes:g} minutes** into the real `custody supervisor` (journal WAL, "
        "synchronous=FULL, rules, acks). Memory is RSS after a 20 s warm-up and at the end.\n\n"
        "| events sent | journaled | supervisor RSS start → end (peak) | growth in 2nd half "
        "| broker RSS start → end | journal size |\n|---:|---:|---|---:|---|---:|\n"
        f"| {sent:,} | {journaled:,} | {start[0]:.0f} → {end[0]:.0f} MB ({peak_sup:.0f}) | "
        f"{slope:+.2f} MB/min | {start[1]:.0f} → {end[1]:.0f} MB | {size_mb:.0f} MB |\n\n"
        f"Elapsed {elapsed:.0f} s; every sent event was journaled."))
    return 0 if journaled >= sent else 1


if __name__ == "__main__":
    sys.exit(main())
