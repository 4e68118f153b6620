"""QoS 1 events/s from the MicroPython firmware path, TCP_NODELAY on vs off, side by side.

Runs firmware/test_support/bench_publish.py in the MicroPython unix port against a real
Mosquitto (loopback, `set_tcp_nodelay true` on the broker), alternating the two settings,
and reports medians of the runs and their ratio.
"""

import argparse
import statistics
import subprocess
from pathlib import Path

from benchmarks.results import command_line, write_section
from custody.broker import BrokerConfig, Mosquitto

ROOT = Path(__file__).resolve().parent.parent
FW = ROOT / "firmware"


def run_once(port: int, count: int, nodelay: bool) -> float:
    """Events per second for one run."""
    env = {"MICROPYPATH": f"{FW / 'test_support'}:{FW / 'lib'}"}
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "micropython"),
                        str(FW / "test_support" / "bench_publish.py"), str(port), str(count),
                        "1" if nodelay else "0"], capture_output=True, text=True, env=env,
                       check=True, timeout=600)
    n, ms = (int(x) for x in r.stdout.split())
    return n * 1000 / max(ms, 1)


def main() -> None:
    """Measure and write the RESULTS.md section."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=200, help="events per run")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with Mosquitto(BrokerConfig()) as broker:
        on, off = [], []
        for _ in range(args.runs):
            on.append(run_once(broker.port, args.count, True))
            off.append(run_once(broker.port, args.count, False))
    m_on, m_off = statistics.median(on), statistics.median(off)
    body = (f"{args.runs} alternating runs of {args.count} signed events each, QoS 1 (the "
            "publisher waits for each PUBACK, as umqtt.simple does).\n\n"
            "| TCP_NODELAY | median events/s | runs |\n|---|---|---|\n"
            f"| on | {m_on:.0f} | {', '.join(f'{x:.0f}' for x in on)} |\n"
            f"| off | {m_off:.0f} | {', '.join(f'{x:.0f}' for x in off)} |\n\n"
            f"Ratio on/off: **{m_on / m_off:.1f}x**. Why the firmware sets TCP_NODELAY.")
    write_section("firmware QoS 1 rate (TCP_NODELAY)", command_line(), body)
    print(body)


if __name__ == "__main__":
    main()
