"""One supervisor for a large centre: 1,000 rooms x 2 events/s into the real `custody
supervisor`, with a fall in some room every half second; alert latency (event sent -> alert
received), every sent event journaled, and the supervisor's memory over time.

The rooms are simulated nodes (benchmarks/fleet.py) sending sealed, sequenced events (camera
heartbeats, person counts, doors); each fall is a camera's `behaviour` event of class `fall`
(an immediate rule) and ends a second later. The default run is short; the 10-minute figure is

    .venv/bin/python -m benchmarks.bench_rooms --minutes 10

    .venv/bin/python -m benchmarks.bench_rooms [--rooms 1000] [--per-room 2] [--minutes 1.5]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from benchmarks.bench_soak import rss_mb
from benchmarks.fleet import Fleet, write_fleet
from benchmarks.results import command_line, write_section
from custody.broker import BrokerConfig, Mosquitto
from protocol.topics import Topics
from protocol.transport import LinkConf, make_client
from tests.fault_support import Proc, journal_count, supervisor_argv, wait_until

WARM_UP_S = 20.0
SAMPLE_S = 5.0


def pct(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank); 0 when there are none."""
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else 0.0


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per minute."""
    if len(samples) < 2:
        return 0.0
    mt = statistics.fmean(t for t, _ in samples)
    mm = statistics.fmean(m for _, m in samples)
    var = sum((t - mt) ** 2 for t, _ in samples)
    return 60 * sum((t - mt) * (m - mm) for t, m in samples) / var if var else 0.0


def main() -> int:
    """Run it and write the section."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rooms", type=int, default=1000)
    ap.add_argument("--per-room", type=float, default=2.0, help="events/s per room")
    ap.add_argument("--minutes", type=float, default=1.5)
    ap.add_argument("--fall-every", type=float, default=0.5, help="seconds between falls")
    args = ap.parse_args()
    rate = args.rooms * args.per_room
    got: dict[str, float] = {}
    lock = threading.Lock()

    def on_message(c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        a = json.loads(m.payload)
        if a["state"] == "raised":
            with lock:
                got.setdefault(a["id"], time.perf_counter())

    with tempfile.TemporaryDirectory(prefix="custody-rooms-") as tmp, \
            Mosquitto(BrokerConfig()) as broker:
        d = Path(tmp)
        site = write_fleet(d, "rooms-site", args.rooms, broker_port=broker.port)
        db = d / "journal.db"
        sup = Proc(supervisor_argv(site, d / "keys.toml", db, broker.host, broker.port),
                   d / "supervisor.log").start()
        wait_until(lambda: db.exists(), 60, "the supervisor's journal", sup)
        time.sleep(2.0)
        sub = make_client(f"rooms-alerts-{os.getpid()}", LinkConf(broker.host, broker.port))
        ready = threading.Event()
        sub.on_subscribe = lambda *a: ready.set()
        sub.on_message = on_message
        sub.connect(broker.host, broker.port, 30)
        sub.loop_start()
        sub.subscribe(Topics("rooms-site").alert("critical", "fall"), qos=1)
        assert ready.wait(10), "alert subscriber not subscribed"
        fleet = Fleet(broker.host, broker.port, "rooms-site", args.rooms, rate,
                      fall_every_s=args.fall_every).start()
        samples: list[tuple[float, float]] = []
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < args.minutes * 60:
                time.sleep(SAMPLE_S)
                samples.append((time.monotonic() - t0, rss_mb(sup.pid)))
                if not sup.alive():
                    raise RuntimeError("supervisor died: " + sup.text()[-2000:])
            sent = fleet.stop()
            elapsed = time.monotonic() - t0
            t_stop = time.monotonic()
            wait_until(lambda: journal_count(db, "event") >= sent, 300,
                       "every sent event journaled", sup)
            drain_s = time.monotonic() - t_stop
            journaled = journal_count(db, "event")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with lock:
                    if set(fleet.falls) <= set(got):
                        break
                time.sleep(0.2)
        finally:
            fleet.stop()
            sub.disconnect()
            sub.loop_stop()
            sup.stop()
        loadavg = os.getloadavg()
    with lock:
        lat = [(got[a] - t) * 1000 for a, t in fleet.falls.items() if a in got]
        missing = len(set(fleet.falls) - set(got))
    warm = [s for s in samples if s[0] >= WARM_UP_S]
    half = [s for s in samples if s[0] >= max(WARM_UP_S, args.minutes * 30)]
    slope_all, slope_half = slope_mb_per_min(warm), slope_mb_per_min(half)
    start_mb = warm[0][1] if warm else 0.0
    end_mb = samples[-1][1] if samples else 0.0
    peak = max((m for _, m in samples), default=0.0)
    lost = max(0, sent - journaled)
    print(f"sent {sent} ({sent / elapsed:.0f}/s), journaled {journaled}, falls "
          f"{len(fleet.falls)} (missing {missing}), p50 {pct(lat, 0.5):.1f} ms p99 "
          f"{pct(lat, 0.99):.1f} ms, RSS {start_mb:.0f} -> {end_mb:.0f} MB, slope "
          f"{slope_all:+.2f} MB/min (2nd half {slope_half:+.2f})")
    write_section("One supervisor, many rooms", command_line(), (
        f"{args.rooms} simulated room nodes at {args.per_room:g} events/s each "
        f"({rate:.0f}/s asked, **{sent / elapsed:.0f}/s sent**) for **{args.minutes:g} "
        f"minutes** into the real `custody supervisor` (journal WAL, synchronous=FULL, rules, "
        f"signed acks), a `fall` in some room every {args.fall_every:g} s. The 10-minute "
        "command: `.venv/bin/python -m benchmarks.bench_rooms --minutes 10`.\n\n"
        "| events sent | journaled | lost | falls → alerts | alert p50 | **alert p99** | max "
        "| RSS after warm-up → end (peak) | slope after warm-up | slope 2nd half |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n"
        f"| {sent:,} | {journaled:,} | **{lost}** | {len(lat)} of {len(fleet.falls)} | "
        f"{pct(lat, 0.5):.1f} ms | **{pct(lat, 0.99):.1f} ms** | {max(lat, default=0):.1f} ms "
        f"| {start_mb:.0f} → {end_mb:.0f} MB ({peak:.0f}) | {slope_all:+.2f} MB/min | "
        f"{slope_half:+.2f} MB/min |\n\n"
        f"Warm-up {WARM_UP_S:.0f} s (RSS sampled every {SAMPLE_S:.0f} s, slopes are "
        f"least-squares fits); the journal caught up {drain_s:.1f} s after the fleet stopped. "
        f"Load average (1/5/15 min) at the end: "
        f"{' / '.join(f'{x:.1f}' for x in loadavg)} on {os.cpu_count()} cores shared with "
        "other jobs (the fleet's publisher and Mosquitto run on them too)."))
    return 0 if lost == 0 and missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
