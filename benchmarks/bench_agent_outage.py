"""The full-length outage check: broker stopped for 60 s while the room keeps producing events.

    .venv/bin/python -m benchmarks.bench_agent_outage [--outage 60]

Same scenario as tests/test_agent_durability.py (which uses a 5 s outage to keep the suite
short): 20 bands read before the outage, 20 during it (80 events with their leaves), the
broker stopped with SIGTERM and restarted on the same port and store. Reports whether
anything was lost, the duplicates the supervisor-side dedupe absorbed, the time from broker
restart until every event was acked, and the availability sequence seen.
"""

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import command_line, write_section  # noqa: E402
from custody.broker import BrokerConfig, Mosquitto  # noqa: E402
from tests.agent_support import run_outage  # noqa: E402


def main() -> None:
    """Run the outage once and write the RESULTS.md section."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--outage", type=float, default=60.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-outage-") as tmp:
        broker = Mosquitto(BrokerConfig()).start()
        try:
            r = run_outage(broker, Path(tmp), args.outage)
        finally:
            broker.close()
    body = "\n".join([
        f"Broker stopped for {args.outage:.0f} s with 20 bands read before and 20 during the "
        "outage (80 events), then restarted on the same port and store:",
        "",
        "| figure | value |",
        "|---|---|",
        f"| events delivered, in sequence order, none missing | {r['events']} of 80 |",
        f"| duplicates absorbed by the (node, epoch, seq) dedupe | {r['duplicates']} |",
        f"| broker restart -> every event acked | {r['caught_up_s']:.1f} s |",
        f"| availability sequence seen by a persistent subscriber | "
        f"{' -> '.join(r['availability'])} |",
    ])
    write_section("agent: 60 s broker outage", command_line(), body)
    print(body)


if __name__ == "__main__":
    main()
