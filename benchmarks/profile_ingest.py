"""Profile the supervisor's ingest path in one process, without MQTT: where does the CPU go?

A `Supervisor` over a fleet site (benchmarks/fleet.py) is fed pre-sealed events through its
inbox and driven exactly as `Supervisor.run` drives it (a step, the rules after each batch, the
full tick every RULE_TICK_S); publishing is replaced by a counter, so the figure is the worker
thread's own cost per event: verify, journal (WAL, synchronous=FULL), state, rules, signed ack. With
`--profile` it prints where the time went: with pyinstrument (a dev dependency) if installed,
else with cProfile. `--batch N` hands the worker at most N messages per step, as a live
supervisor that keeps up sees them (the rules then run after every few events);
`--evaluate-all` runs every rule over the whole site each time (the evaluator before issue
17's incremental one), for a side-by-side figure.

    .venv/bin/python -m benchmarks.profile_ingest [--events 20000] [--rooms 200] [--profile]
        [--batch N] [--evaluate-all]
"""

import argparse
import cProfile
import itertools
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.fleet import fleet_keys, node_id, room_id, write_fleet
from protocol.clock import REAL
from protocol.envelope import seal
from protocol.site import load_site
from protocol.topics import Topics
from protocol.transport import LinkConf
from supervisor import service
from supervisor.service import Supervisor


def sealed(site_id: str, rooms: int, n: int) -> list[tuple[str, bytes]]:
    """`n` fleet events (camera heartbeats, person counts, doors), round robin over rooms."""
    topics, keys = Topics(site_id), fleet_keys(rooms)
    kinds = itertools.cycle(["camera", "camera", "person_count", "door"])
    epoch, now = int(time.time()), int(time.time() * 1000)
    out = []
    for i in range(n):
        r = i % rooms
        room, node, kind = room_id(r), node_id(r), next(kinds)
        body: dict[str, Any]
        if kind == "camera":
            body = {"camera": f"cam-{r:03d}", "room": room, "live": True, "recording": True,
                    "fps_x10": 150}
        elif kind == "person_count":
            body = {"camera": f"cam-{r:03d}", "room": room, "count": 0}
        else:
            body = {"door": f"d-{room}", "state": "closed"}
        out.append((topics.node(node, "event"),
                     seal(keys[node], node, epoch, i // rooms + 1, now + i, kind, body)))
    return out


def drive(sup: Supervisor, items: list[tuple[str, bytes]], batch: int = 0) -> float:
    """Run the worker loop over `items` (queued as the inbox takes them, at most `batch` per
    step when given); return seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    last_tick, i = 0.0, 0
    while i < len(items) or not sup.inbox.empty():
        end = min(len(items), i + batch) if batch else len(items)
        while i < end and not sup.inbox.full():
            sup.inbox.put(items[i])
            i += 1
        if sup.step(timeout=0) > 0:
            sup.react()
        if time.monotonic() - last_tick >= service.RULE_TICK_S:
            sup.tick()
            last_tick = time.monotonic()
    sup.tick()
    drive.cpu_s = time.process_time() - c0  # type: ignore[attr-defined]
    return time.perf_counter() - t0


def main() -> None:
    """Run the profile and print the rate (and the profile with --profile)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--rooms", type=int, default=200)
    ap.add_argument("--profile", action="store_true", help="print a pyinstrument profile")
    ap.add_argument("--batch", type=int, default=0, help="messages per step at most")
    ap.add_argument("--evaluate-all", action="store_true",
                    help="every rule over the whole site at every step (the old evaluator)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="profile-ingest-") as tmp:
        d = Path(tmp)
        site_path = write_fleet(d, "prof-site", args.rooms)
        site = load_site(site_path)
        sup = Supervisor(site, fleet_keys(args.rooms), d / "journal.db", d / "cp.json",
                         LinkConf("127.0.0.1", 1), REAL)
        published = [0]

        def publish(topic: str, payload: bytes, qos: int, retain: bool) -> Any:
            published[0] += 1

        sup.publish = publish  # type: ignore[method-assign]
        sup.ingest.publish = publish
        sup.alerts.publish = publish
        if args.evaluate_all:
            sup.alerts.evaluator = None
        rules_cpu = [0.0]
        reconcile = sup.alerts.reconcile

        def timed(now_ms: int) -> int:
            c = time.process_time()
            try:
                return reconcile(now_ms)
            finally:
                rules_cpu[0] += time.process_time() - c

        sup.alerts.reconcile = timed  # type: ignore[method-assign]
        items = sealed(site.id, args.rooms, args.events)
        drive(sup, items[:200], args.batch)  # warm-up: first retained snapshots, roster
        rules_cpu[0] = 0.0
        rest = items[200:]
        profiler: Any = None
        if args.profile:
            try:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0005)
            except ImportError:  # not a project dependency: the standard library's instead
                profiler = cProfile.Profile()
            profiler.enable() if isinstance(profiler, cProfile.Profile) else profiler.start()
        dt = drive(sup, rest, args.batch)
        if isinstance(profiler, cProfile.Profile):
            profiler.disable()
        elif profiler is not None:
            profiler.stop()
        sup.journal.close()
    cpu = getattr(drive, "cpu_s", dt)
    print(f"{len(rest)} events in {dt:.2f} s ({cpu:.2f} s CPU, {cpu / len(rest) * 1e6:.0f} µs "
          f"per event): {len(rest) / dt:,.0f} events/s in-process "
          f"({published[0]} messages published); rules (reconcile) "
          f"{rules_cpu[0] / len(rest) * 1e6:.0f} µs CPU per event "
          f"({'every rule, whole site' if args.evaluate_all else 'incremental'}); load average "
          f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if isinstance(profiler, cProfile.Profile):
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    elif profiler is not None:
        print(profiler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    main()
