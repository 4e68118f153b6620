"""Room agent figures: reader-frame parse throughput and outbox commit rate.

    .venv/bin/python -m benchmarks.bench_agent [--runs 5]

Parse throughput: a stream of frames (clean, and with noise plus 10 % corrupted frames) fed
to the parser in 64-byte chunks, as serial reads arrive; frames/s, median of runs.
Outbox commit rate: events sealed and committed one transaction each (WAL, synchronous=FULL:
an fsync per event) on the disk under the repository, events/s, median of runs; measured
side by side with synchronous=NORMAL for the cost of durability.
"""

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import command_line, write_section  # noqa: E402
from edge_agent.drivers import rdm6300, uhf_m100  # noqa: E402
from edge_agent.drivers.rdm6300 import Rdm6300Parser  # noqa: E402
from edge_agent.drivers.uhf_m100 import M100Parser  # noqa: E402
from edge_agent.outbox import Outbox  # noqa: E402
from protocol.clock import REAL  # noqa: E402

KEY = bytes(range(32))


def _stream(encode, n: int, noisy: bool, seed: int = 1) -> tuple[bytes, int]:
    rng = random.Random(seed)
    out, good = bytearray(), 0
    for i in range(n):
        f = bytearray(encode(f"{i * 7919 % (1 << 40):010x}"))
        if noisy and rng.random() < 0.1:
            f[len(f) // 2] ^= 0x01  # corrupt: counted as a checksum failure
        else:
            good += 1
        if noisy:
            out += bytes(rng.randrange(0x30, 0x7B) for _ in range(rng.randrange(0, 4)))
        out += f
    return bytes(out), good


def _parse_rate(make, data: bytes, expect: int, runs: int) -> float:
    rates = []
    for _ in range(runs):
        p = make()
        t0 = time.perf_counter()
        n = 0
        for i in range(0, len(data), 64):
            n += len(p.feed(data[i:i + 64]))
        dt = time.perf_counter() - t0
        assert n == expect, (n, expect)
        rates.append(n / dt)
    return statistics.median(rates)


def _commit_rate(sync: str, n: int, runs: int, base: Path) -> float:
    rates = []
    for r in range(runs):
        d = base / f"{sync}-{r}"
        box = Outbox(d / "outbox.db", "node-bench", KEY, REAL, 0)
        box.db.execute(f"PRAGMA synchronous={sync}")
        body = {"band": "0a1b2c3d4e", "room": "room-a", "reader": "uhf-a", "rssi": -60}
        t0 = time.perf_counter()
        for _ in range(n):
            box.append("presence.enter", body)
        dt = time.perf_counter() - t0
        box.close()
        rates.append(n / dt)
    return statistics.median(rates)


def main() -> None:
    """Measure and write the RESULTS.md section."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--events", type=int, default=1000)
    args = ap.parse_args()

    def uhf(b: str) -> bytes:
        return uhf_m100.inventory_notice(uhf_m100.band_epc(b), rssi=-60)

    rows = []
    for name, make, enc in (("RDM6300 (14-byte frames)", Rdm6300Parser, rdm6300.encode),
                            ("M100 UHF (24-byte inventory notices)", M100Parser, uhf)):
        clean, n_clean = _stream(enc, args.frames, False)
        noisy, n_good = _stream(enc, args.frames, True)
        rc = _parse_rate(make, clean, n_clean, args.runs)
        rn = _parse_rate(make, noisy, n_good, args.runs)
        rows.append(f"| {name} | {rc:,.0f} | {rn:,.0f} |")
    base = Path(tempfile.mkdtemp(prefix="bench-outbox-", dir=ROOT / "benchmarks"))
    try:
        full = _commit_rate("FULL", args.events, args.runs, base)
        normal = _commit_rate("NORMAL", args.events, args.runs, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    body = "\n".join([
        f"Reader-frame parse throughput (frames/s, median of {args.runs} runs of "
        f"{args.frames:,} frames fed in 64-byte chunks; noisy = 0-3 junk bytes between frames "
        "and 10 % of frames corrupted, those counted not read):",
        "",
        "| parser | clean stream | noisy stream |",
        "|---|---|---|",
        *rows,
        "",
        "For scale: an RDM6300 at 9600 baud delivers at most ~69 frames/s and an M100 at "
        "115200 baud at most ~480 notices/s, so one core parses far faster than any reader "
        "can send.",
        "",
        f"Outbox commit rate (events sealed + committed one transaction each, median of "
        f"{args.runs} runs of {args.events:,}, on the repository's disk):",
        "",
        "| WAL, synchronous | events/s |",
        "|---|---|",
        f"| FULL (what the agent uses) | {full:,.0f} |",
        f"| NORMAL (not durable on power loss; for comparison) | {normal:,.0f} |",
        "",
        f"FULL / NORMAL = {full / normal:.2f}, measured side by side. The default capacity "
        "assumes a peak of 1 event/s per room node.",
    ])
    write_section("agent: reader parsing and outbox commits", command_line(), body)
    print(body)


if __name__ == "__main__":
    main()
