"""Supervisor start-up with a long journal: from a state snapshot against a full replay.

Builds a journal of `--entries` entries (default 1,000,000) of a centre of ~200 rooms through
custody days (tests/journal_builder.py: sealed device events from every room, detainees
through every step with their officers, staff commands, alerts, device trouble), makes a
signed snapshot of its fold the way the supervisor's background maker does, then starts the
real `custody supervisor` process against a real Mosquitto and times launch -> retained
`supervisor/availability` = online (ready: state rebuilt, connected, subscribed), for:

- a snapshot at the last entry (a clean restart),
- a snapshot `--tail` entries back (the most a crash leaves by the default `snapshot_every`),
- no snapshot (full replay, what start-up did before snapshots).

Median of `--runs` runs each; the machine's load is noted.

    .venv/bin/python -m benchmarks.bench_startup [--entries 1000000] [--runs 3] [--tail 20000]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt

from benchmarks.results import command_line, write_section
from custody.broker import BrokerConfig, Mosquitto
from protocol.canonical import dumpb
from protocol.keys import dump_keys
from protocol.site import SupervisorConf, parse_site
from protocol.topics import Topics
from protocol.transport import LinkConf, make_client
from supervisor import snapshot as S
from supervisor.journal import Journal
from tests.fault_support import Proc, supervisor_argv
from tests.journal_builder import build, centre_keys, centre_rooms, centre_toml

SITE = "startup-site"
HOLDING, INTERVIEW = 100, 100
KEY = bytes(range(32))
READY_TIMEOUT_S = 600.0


class Watch:
    """Follows the supervisor's retained availability and health."""

    def __init__(self, host: str, port: int) -> None:
        self.topics = Topics(SITE)
        self.cond = threading.Condition()
        self.online_at: float | None = None
        self.health: dict[str, Any] | None = None
        self.c = make_client("bench-startup-watch", LinkConf(host, port))
        self.c.on_message = self._on
        self.c.connect(host, port, 30)
        self.c.subscribe([(self.topics.supervisor("availability"), 1),
                          (self.topics.supervisor("health"), 1)])
        self.c.loop_start()

    def _on(self, c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        import json

        if not m.payload:  # our own clearing of the retained message
            return
        with self.cond:
            if m.topic.endswith("/availability") and m.payload == b"online":
                if self.online_at is None:
                    self.online_at = time.perf_counter()
            elif m.topic.endswith("/health") and self.online_at is not None:
                self.health = json.loads(m.payload)
            self.cond.notify_all()

    def reset(self) -> None:
        """Forget what was seen (and clear the retained messages of the last run)."""
        for t in ("availability", "health"):
            self.c.publish(self.topics.supervisor(t), b"", qos=1, retain=True).wait_for_publish(5)
        time.sleep(0.5)
        with self.cond:
            self.online_at, self.health = None, None

    def wait(self, timeout: float) -> tuple[float, dict[str, Any]]:
        """When `online` arrived (perf_counter) and the first health after it."""
        with self.cond:
            ok = self.cond.wait_for(lambda: self.online_at is not None and
                                    self.health is not None, timeout)
            if not ok or self.online_at is None or self.health is None:
                raise TimeoutError("the supervisor did not come online")
            return self.online_at, self.health

    def close(self) -> None:
        """Disconnect."""
        self.c.loop_stop()
        self.c.disconnect()


def start_once(argv: list[str], log: Path, watch: Watch) -> tuple[float, dict[str, Any]]:
    """Launch the supervisor, time it to `online`, stop it; (seconds, its health)."""
    watch.reset()
    t0 = time.perf_counter()
    sup = Proc(argv, log).start()
    try:
        online, health = watch.wait(READY_TIMEOUT_S)
    finally:
        sup.signal(15)
        sup.wait(120)
    return online - t0, health


def main() -> int:
    """Build, snapshot, time the start-ups, write the section."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--full-runs", type=int, default=None,
                    help="runs of the full replay (default: --runs; it is the slow one)")
    ap.add_argument("--tail", type=int, default=SupervisorConf.snapshot_every,
                    help="entries after the older snapshot (default: snapshot_every)")
    args = ap.parse_args()
    args.full_runs = args.runs if args.full_runs is None else max(1, args.full_runs)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="custody-startup-") as tmp, \
            Mosquitto(BrokerConfig()) as broker:
        d = Path(tmp)
        # No background maker while timing: each run starts from the store it is given.
        toml = (centre_toml(SITE, HOLDING, INTERVIEW) +
                "\n[supervisor]\nsnapshot_every = 1000000000\n")
        (d / "site.toml").write_text(toml)
        site = parse_site(tomllib.loads(toml))
        keys = {**centre_keys([r for r, _ in centre_rooms(HOLDING, INTERVIEW)]),
                "supervisor": KEY}
        (d / "keys.toml").write_text(dump_keys(keys))
        db = d / "journal.db"
        t = time.perf_counter()
        j = Journal(db)
        built = build(j, HOLDING, INTERVIEW, args.entries, seed=17, lanes=40)
        n = j.count
        j.close()
        build_s = time.perf_counter() - t
        print(f"journal: {n:,} entries in {build_s:.0f} s", flush=True)

        # As the supervisor's maker does: the first snapshot folds the journal from #1, each
        # later one folds the entries since the one before onto it.
        t = time.perf_counter()
        first = S.make(site, db, d / "made-tail", KEY, n - args.tail)
        first_s = time.perf_counter() - t
        shutil.copytree(d / "made-tail", d / "made-last")
        t = time.perf_counter()
        inc = S.make(site, db, d / "made-last", KEY, n)
        inc_s = time.perf_counter() - t
        assert first["from"] is None and inc["from"] == n - args.tail
        print(f"snapshot at #{n - args.tail:,} from #1: {first_s:.1f} s; at #{n:,} from it: "
              f"{inc_s:.1f} s, {inc['bytes']:,} bytes", flush=True)
        shutil.copy(db, d / "pristine.db")  # each run starts from the same journal

        argv = supervisor_argv(d / "site.toml", d / "keys.toml", db, broker.host, broker.port)
        store = S.snapshot_dir(db.with_suffix(".checkpoint"))
        watch = Watch(broker.host, broker.port)
        results: dict[str, list[float]] = {"last": [], "tail": [], "full": []}
        healths: dict[str, dict[str, Any]] = {}
        inside: dict[str, list[int]] = {"last": [], "tail": [], "full": []}  # rebuild ms
        try:
            for run in range(args.runs):
                for name in ("last", "tail", "full"):
                    if name == "full" and run >= args.full_runs:
                        continue
                    # The same journal and checkpoints each time: a run's own alerts (the
                    # rules judge the old journal at today's time) must not carry over.
                    for f in d.glob("journal.*"):
                        if f.is_dir():
                            shutil.rmtree(f)
                        else:
                            f.unlink()
                    shutil.copy(d / "pristine.db", db)
                    if name != "full":
                        shutil.copytree(d / f"made-{name}", store)
                    secs, health = start_once(argv, d / f"sup-{name}-{run}.log", watch)
                    results[name].append(secs)
                    healths[name] = health["snapshots"]
                    inside[name].append(health["snapshots"]["startup_ms"])
                    print(f"run {run + 1} {name}: {secs:.2f} s to online "
                          f"(snapshots {dumpb(health['snapshots']).decode()})", flush=True)
        finally:
            watch.close()
    load_after = os.getloadavg()
    med = {k: statistics.median(v) for k, v in results.items()}
    for k in ("last", "tail"):
        assert healths[k]["loaded"] is not None and healths[k]["refused"] == 0, healths[k]
    assert healths["full"]["loaded"] is None
    label = {"last": "snapshot at the last entry (clean restart)",
             "tail": f"snapshot {args.tail:,} entries back (`snapshot_every`: about the most "
                     "a crash leaves)",
             "full": "no snapshot: full replay (before this change start-up also read the "
                     "journal a second time for the replay window)"}
    rows = "\n".join(
        f"| {label[k]} | **{med[k]:.2f} s** | {', '.join(f'{x:.2f}' for x in results[k])} | "
        f"{statistics.median(inside[k]):,.0f} ms, {healths[k]['replayed']:,} entries replayed |"
        for k in ("last", "tail", "full"))

    def verdict(k: str) -> str:
        return "met" if med[k] <= 10 else "NOT met"

    body = f"""Journal: **{n:,} entries** built in {build_s:.0f} s through the journal API
(valid chain; tests/journal_builder.py): a centre of {len(centre_rooms(HOLDING, INTERVIEW))}
rooms, each with a node (camera heartbeats, person counts, doors), {built.next_detainee:,}
detainees through registration, search, holding, welfare visits, interview and release with
their officers, staff commands, alerts raised/acknowledged/resolved, device trouble. Launch of
`custody supervisor` (real process, real Mosquitto) to its retained `supervisor/availability`
= `online`: state rebuilt, connected, subscribed. Median of {args.runs} runs each (full replay:
{args.full_runs}), interleaved, each from the same journal and checkpoints.

| start-up | median to online | runs (s) | rebuild inside (health `snapshots`) |
|---|---|---|---|
{rows}

Goal ≤ 10 s with 1,000,000 entries: from the last entry {verdict('last')}, from
{args.tail:,} back {verdict('tail')}. Full replay / snapshot-plus-{args.tail:,}:
{med['full'] / med['tail']:.1f}x.

Inside the process (medians of health's `startup_ms`): loading the snapshot
({inc['bytes'] / 1e6:.1f} MB) {statistics.median(inside['last']):,.0f} ms; replay
{statistics.median(inside['full']) * 1000 / n:.0f} µs per entry from #1,
{(statistics.median(inside['tail']) - statistics.median(inside['last'])) * 1000 / args.tail:.0f}
µs per entry of the tail. The rest of "to online" is starting Python, imports and the MQTT
connection.

Making snapshots (the background maker, a niced child process): the whole journal folded from
#1 up to #{n - args.tail:,}: {first_s:.1f} s; the periodic case, the next {args.tail:,} entries
folded onto it and filed: {inc_s:.1f} s ({inc['bytes']:,} bytes).

Machine load (1-min load average, 2 cores shared): {load_before[0]:.1f} before,
{load_after[0]:.1f} after.
"""
    write_section("supervisor start-up with a long journal", command_line(), body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
