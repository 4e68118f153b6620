"""The fault scenarios of tests/test_fault_e2e.py at full size, counted into RESULTS.md.

Real `custody agent`, Mosquitto and `custody supervisor`; a numbered tap device on a pty.
For each scenario: device events, journal entries, missing, duplicated, out of order (by
node sequence) and late (journaled after an event the device produced later, i.e. a gap
filled by retransmission). Missing, duplicated and out of order must be 0.

    .venv/bin/python -m benchmarks.bench_faults [--cut 60] [--backlog 1000] [--burst 2000]
"""

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results import command_line, write_section
from custody.broker import BrokerConfig, Mosquitto
from tests.fault_support import tally
from tests.test_fault_e2e import (
    Chain,
    scenario_broker_kill,
    scenario_cut,
    scenario_node_kill,
    scenario_overflow,
)


def _chain_run(fn: Any, **kw: Any) -> tuple[Any, Any]:
    with tempfile.TemporaryDirectory(prefix="custody-faults-") as tmp, \
            Mosquitto(BrokerConfig()) as b:
        c = Chain(Path(tmp), b)
        try:
            extra = fn(c, **kw)
            return tally(c.taps.generated, c.journaled_taps()), extra
        finally:
            c.close()


def _states(states: list[str]) -> str:
    """Alert lifecycle messages counted by state, e.g. '12 raised, 12 resolved'."""
    counts = Counter(states)
    return ", ".join(f"{n} {st}" for st, n in counts.items()) or "none"


def main() -> int:
    """Run every scenario and write the section."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cut", type=float, default=60.0, help="seconds the node is cut off")
    ap.add_argument("--backlog", type=int, default=1000)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--burst", type=int, default=2000, help="events in the overflow burst")
    args = ap.parse_args()
    rows: list[tuple[str, Any, str]] = []

    t0 = time.monotonic()
    t, _ = _chain_run(scenario_broker_kill, before=50, backlog=args.backlog)
    rows.append((f"broker kill -9 with {args.backlog} events queued for the supervisor", t,
                 f"{time.monotonic() - t0:.0f} s"))
    t0 = time.monotonic()
    t, mid = _chain_run(scenario_node_kill, rounds=args.kills, burst=500)
    rows.append((f"node kill -9 right after a 500-event burst, {args.kills} times", t,
                 f"{mid} of {args.kills} kills left events unacked (mid-publish)"))
    with tempfile.TemporaryDirectory(prefix="custody-cut-") as tmp:
        r = scenario_cut(Path(tmp), args.cut)
    rows.append((f"node cut off {args.cut:.0f} s ({r['method']}), device tapping at 10/s",
                 r["tally"], f"node offline in the journal {r['offline_ms'][0] / 1000:.1f} s "
                 f"after the cut; device-offline alert: {_states(r['device_offline'])}"))
    with tempfile.TemporaryDirectory(prefix="custody-overflow-") as tmp:
        r = scenario_overflow(Path(tmp), burst=args.burst)
    rows.append((f"supervisor throttled (stopped 90 %), broker max_queued_messages 10, "
                 f"{args.burst}-event burst", r["tally"],
                 f"broker dropped: {r['broker_dropped']}; missing-events alerts: "
                 f"{_states(r['missing_events'])}"))
    lines = ["| scenario | device events | journaled | missing | duplicated | out of order | "
             "late | notes |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    ok = True
    for name, t, note in rows:
        ok = ok and t.clean() and t.journaled == t.generated
        lines.append(f"| {name} | {t.generated:,} | {t.journaled:,} | **{t.missing}** | "
                     f"**{t.duplicated}** | **{t.out_of_order}** | {t.late} | {note} |")
        print(name, t, note, flush=True)
    write_section("Fault injection: device events against the journal", command_line(), (
        "Real room agent, Mosquitto and supervisor processes; every device event is a tap of a "
        "fresh band on the desk reader's pty, so each journal entry can be matched to the "
        "device event it came from. Out of order = the node's sequence order differs from the "
        "device order; late = journaled after an event the device produced later (a gap "
        "filled by retransmission, which the gap detector reports). The CI-sized versions are "
        "tests/test_fault_e2e.py (also: supervisor kill -9 between rule evaluation and the "
        "alert's journal commit).\n\n" + "\n".join(lines)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
