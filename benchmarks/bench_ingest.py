"""Supervisor ingest rate vs raw paho -> Mosquitto -> paho, and alert latency under load.

Side by side in one run, on one fresh Mosquitto:
1. raw: N signed event payloads (QoS 1) wait in the persistent session of a bare paho
   subscriber that only counts them; rate = N / time from its connect to the last message.
2. supervisor: the same N payloads wait in the `custody supervisor` process's persistent
   session; rate = N / time from its "online" to the last signed ack it sends (an ack is sent
   only after the event is verified, committed to the journal and folded into the state; the
   rules run at least every 20 ms meanwhile). Both are consumer drain rates, so the
   publisher's speed does not enter either figure.
3. alert latency: while 1,000 events/s of background load flow in, a `fall` behaviour event
   (an immediate rule) is sent every 100 ms; latency = alert message received - event sent.

With `--baseline REV` the supervisor of git revision REV (exported with `git archive`) is
measured too, interleaved with this tree's in every run, so before and after share the
machine's load.

Usage: .venv/bin/python -m benchmarks.bench_ingest [--events 5000] [--repeats 3] [--baseline REV]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from benchmarks.results import command_line, write_section
from custody.broker import Mosquitto
from protocol.envelope import seal
from protocol.keys import dump_keys
from protocol.site import DEMO_SITE, load_site
from protocol.topics import Topics
from protocol.transport import LinkConf, make_client
from supervisor.process import incident_id

SITE = load_site(DEMO_SITE)
TOPICS = Topics(SITE.id, SITE.topic_prefix)
NODES = [n.id for n in SITE.nodes if n.kind == "room"]
KEYS = {n: bytes([i + 1]) * 32 for i, n in enumerate(NODES)}


def node_event(node: str, i: int) -> tuple[str, dict[str, Any]]:
    """An everyday event this node's own devices make (ingest refuses any other)."""
    n = SITE.node(node)
    if n.doors:
        return "door", {"door": n.doors[0].door, "state": "open" if i % 2 else "closed"}
    if n.cameras:
        return "camera", {"camera": n.cameras[0].id, "room": n.room, "live": True}
    reader = n.readers[0]
    return "band.status", {"band": "00000000ee", "reader": reader.id, "tamper": False,
                           "battery_low": bool(i % 2)}


class Counter:
    """Counts received messages and notes when a target count is reached."""

    def __init__(self, target: int) -> None:
        self.n, self.target, self.done = 0, target, threading.Event()
        self.seen: set[tuple[str, int]] = set()
        self.lock = threading.Lock()

    def add(self, keys: list[tuple[str, int]]) -> None:
        with self.lock:
            self.seen.update(keys)
            if len(self.seen) >= self.target:
                self.done.set()


def payloads(n: int, epoch: int, start_seq: int = 1) -> list[tuple[str, str, int, bytes]]:
    """n door (or camera) events spread over the room nodes: (topic, node, seq, payload)."""
    out = []
    per = {node: start_seq for node in NODES}
    now = int(time.time() * 1000)
    for i in range(n):
        node = NODES[i % len(NODES)]
        seq = per[node]
        per[node] += 1
        out.append((TOPICS.node(node, "event"), node, seq,
                    seal(KEYS[node], node, epoch, seq, now, *node_event(node, i))))
    return out


def client(broker: Mosquitto, name: str) -> mqtt.Client:
    c = make_client(name, LinkConf(broker.host, broker.port))
    c.connect(broker.host, broker.port, 30)
    c.loop_start()
    return c


def publish_all(pub: mqtt.Client, items: list[tuple[str, str, int, bytes]]) -> None:
    infos = [pub.publish(topic, p, qos=1) for topic, _n, _s, p in items]
    for info in infos:
        info.wait_for_publish(60)


def raw_rate(broker: Mosquitto, n: int, run: int) -> float:
    """Drain rate of a bare paho subscriber: N messages queued in its persistent session."""
    items = payloads(n, 1)
    name = f"raw-sub-{run}"
    sub = make_client(name, LinkConf(broker.host, broker.port), clean_start=False)
    ready = threading.Event()
    sub.on_subscribe = lambda *a: ready.set()
    sub.connect(broker.host, broker.port, 30)
    sub.loop_start()
    sub.subscribe(f"raw{run}/#", qos=1)
    assert ready.wait(5)
    sub.disconnect()
    sub.loop_stop()
    pub = client(broker, f"raw-pub-{run}")
    publish_all(pub, [(f"raw{run}/{node}/{seq}", node, seq, p) for _t, node, seq, p in items])
    pub.disconnect()
    pub.loop_stop()
    count = [0]
    done = threading.Event()

    def on_message(c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        count[0] += 1
        if count[0] >= n:
            done.set()

    sub = make_client(name, LinkConf(broker.host, broker.port), clean_start=False)
    sub.on_message = on_message
    t0 = time.perf_counter()
    sub.connect(broker.host, broker.port, 30)
    sub.loop_start()
    assert done.wait(120), f"raw drain got {count[0]} of {n}"
    dt = time.perf_counter() - t0
    sub.disconnect()
    sub.loop_stop()
    return n / dt


def export_tree(rev: str, into: Path) -> Path:
    """The source tree of git revision `rev`, extracted under `into`."""
    out = into / f"tree-{rev.replace('/', '_')}"
    out.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", "--format=tar", rev], check=True,
                             capture_output=True).stdout
    tar = into / "tree.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(out, filter="data")
    return out


def start_supervisor(broker: Mosquitto, tmp: Path, fresh: bool = True,
                     tree: Path | None = None) -> tuple[subprocess.Popen[bytes], float]:
    """Start `custody supervisor` (of source `tree`, else this one); return it and the moment
    it announced itself online."""
    keys = tmp / "keys.toml"
    keys.write_text(dump_keys(KEYS))
    for f in [*tmp.glob("journal.db*"), *tmp.glob("cp.json*")] if fresh else ():
        f.unlink()
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    probe = client(broker, f"probe-{time.monotonic_ns()}")
    online = threading.Event()
    when = [0.0]

    def on_message(c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        if m.payload == b"online" and not m.retain:
            when[0] = time.perf_counter()
            online.set()

    probe.on_message = on_message
    subscribed = threading.Event()
    probe.on_subscribe = lambda *a: subscribed.set()
    probe.subscribe(TOPICS.supervisor("availability"), qos=1)
    subscribed.wait(5)
    proc = subprocess.Popen([sys.executable, "-m", "custody", "supervisor", "--config",
                             str(DEMO_SITE), "--keys", str(keys), "--db", str(tmp / "journal.db"),
                             "--checkpoint", str(tmp / "cp.json"), "--host", broker.host,
                             "--port", str(broker.port)], stdout=subprocess.DEVNULL,
                            env=env, cwd=tree)
    assert online.wait(30), "supervisor did not come up"
    probe.disconnect()
    probe.loop_stop()
    return proc, when[0]


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def supervisor_rate(broker: Mosquitto, tmp: Path, n: int, run: int,
                    tree: Path | None = None) -> float:
    """Drain rate of the supervisor: N events queued in its session, until the last ack."""
    proc, _ = start_supervisor(broker, tmp, tree=tree)  # makes the persistent session
    stop(proc)
    items = payloads(n, 1)
    counter = Counter(n)
    sub = client(broker, f"ack-sub-{run}")
    ready = threading.Event()
    sub.on_subscribe = lambda *a: ready.set()
    last = [0.0]

    def on_message(c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        env = json.loads(json.loads(m.payload)["env"])
        last[0] = time.perf_counter()
        counter.add([(env["node"], s) for s in env["body"]["seqs"]])

    sub.on_message = on_message
    sub.subscribe(TOPICS.node_filter("ack"), qos=1)
    ready.wait(5)
    pub = client(broker, f"sup-pub-{run}")
    publish_all(pub, items)
    pub.disconnect()
    pub.loop_stop()
    proc, t0 = start_supervisor(broker, tmp, tree=tree)
    try:
        assert counter.done.wait(300), f"only {len(counter.seen)} of {n} acked"
    finally:
        stop(proc)
    sub.disconnect()
    sub.loop_stop()
    return n / (last[0] - t0)


def alert_latency(broker: Mosquitto, samples: int, rate: int, epoch: int) -> list[float]:
    """Send `rate` events/s; every 100th is a `fall` whose alert we time."""
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    lock = threading.Lock()
    sub = client(broker, "alert-sub")
    ready = threading.Event()
    sub.on_subscribe = lambda *a: ready.set()

    def on_message(c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        a = json.loads(m.payload)
        if a["state"] == "raised":
            with lock:
                got.setdefault(a["id"], time.perf_counter())

    sub.on_message = on_message
    sub.subscribe(TOPICS.alert("critical", "fall"), qos=1)
    ready.wait(5)
    pub = client(broker, "load-pub")
    holding = [(n.id, n.room) for n in SITE.nodes if n.kind == "room" and
               SITE.room(n.room).kind == "holding"]
    seqs = {node: 1 for node in NODES}
    total = samples * 100 + rate  # one more second of load after the last fall
    # Sealed beforehand so the load generator spends its CPU on publishing only.
    plan: list[tuple[str, bytes, str | None]] = []
    now = int(time.time() * 1000)
    for i in range(total):
        fall = None
        if i % 100 == 50 and i // 100 < samples:
            k = i // 100
            node, room = holding[k % len(holding)]
            body = {"id": f"f{k}", "phase": "new", "camera": f"cam-{room}", "room": room,
                    "cls": "fall", "score_pct": 90}
            etype, fall = "behaviour", incident_id("fall", f"{node}/f{k}", now + i)
        else:
            node = NODES[i % len(NODES)]
            etype, body = node_event(node, i)
        seq = seqs[node]
        seqs[node] += 1
        plan.append((TOPICS.node(node, "event"),
                     seal(KEYS[node], node, epoch, seq, now + i, etype, body), fall))
    t0 = time.perf_counter()
    for i, (topic, payload, fall) in enumerate(plan):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if fall is not None:
            with lock:
                sent[fall] = time.perf_counter()
        pub.publish(topic, payload, qos=1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with lock:
            if len(got) >= len(sent):
                break
        time.sleep(0.1)
    for c in (sub, pub):
        c.disconnect()
        c.loop_stop()
    with lock:
        missing = set(sent) - set(got)
        assert not missing, f"{len(missing)} fall alerts never arrived"
        return [(got[a] - sent[a]) * 1000 for a in sent]


def pct(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank)."""
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", type=int, default=100, help="alerts timed per run")
    ap.add_argument("--load", type=int, default=1000, help="background events per second")
    ap.add_argument("--baseline", help="git revision whose supervisor is measured alongside")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    trees: dict[str, Path | None] = {"this tree": None}
    if args.baseline:
        trees = {f"baseline {args.baseline}": export_tree(args.baseline, tmp), **trees}
    raws: list[float] = []
    sups: dict[str, list[float]] = {k: [] for k in trees}
    lats: dict[str, list[float]] = {k: [] for k in trees}
    p99s: dict[str, list[float]] = {k: [] for k in trees}  # each run's own p99
    loads: list[float] = []
    with Mosquitto() as broker:
        for run in range(args.repeats):
            raws.append(raw_rate(broker, args.events, run))
            for i, (name, tree) in enumerate(trees.items()):
                sups[name].append(supervisor_rate(broker, tmp, args.events, run * 10 + i, tree))
            print(f"run {run}: raw {raws[-1]:.0f}/s, " + ", ".join(
                f"{k} {v[-1]:.0f}/s" for k, v in sups.items()), flush=True)
            for i, (name, tree) in enumerate(trees.items()):
                proc, _ = start_supervisor(broker, tmp, tree=tree)
                try:
                    got = alert_latency(broker, args.samples, args.load,
                                        epoch=10 + run * 10 + i)
                finally:
                    stop(proc)
                lats[name] += got
                p99s[name].append(pct(got, 0.99))
            loads.append(os.getloadavg()[0])
            print(f"run {run}: alert p99 " + ", ".join(
                f"{k} {v[-1]:.1f} ms" for k, v in p99s.items()), flush=True)
    raw = statistics.median(raws)
    rows = [(f"raw paho → Mosquitto → paho, QoS 1 (median of {args.repeats})",
             *[f"{raw:,.0f} events/s" for _ in trees])]
    rows.append((f"supervisor ingest: verified, journaled (WAL, synchronous=FULL), state, rules, "
                 f"signed ack (median of {args.repeats})",
                 *[f"{statistics.median(v):,.0f} events/s" for v in sups.values()]))
    rows.append(("**ratio supervisor / raw** (median of the per-run ratios)",
                 *[f"**{statistics.median(s / r for s, r in zip(v, raws, strict=True)):.2f}**"
                   for v in sups.values()]))
    rows.append((f"alert latency p50 (fall event sent → alert received), {args.load} events/s "
                 "background", *[f"{statistics.median(v):.1f} ms" for v in lats.values()]))
    rows.append(("alert latency p99, all runs pooled",
                 *[f"{pct(v, 0.99):.1f} ms" for v in lats.values()]))
    rows.append(("**alert latency p99, median of the runs' own p99** (a stall of this shared "
                 "machine lands in one run)",
                 *[f"**{statistics.median(v):.1f} ms**" for v in p99s.values()]))
    rows.append(("alert latency max", *[f"{max(v):.1f} ms" for v in lats.values()]))
    head = "| figure | " + " | ".join(trees) + " |\n|---|" + "---|" * len(trees) + "\n"
    body = head + "".join("| " + " | ".join(r) + " |\n" for r in rows)
    body += (f"\n{args.events} signed door events per run from {len(NODES)} nodes; runs: raw "
             f"{', '.join(f'{r:,.0f}' for r in raws)}; " + "; ".join(
                 f"{k} {', '.join(f'{x:,.0f}' for x in v)}" for k, v in sups.items()) +
             ". Per-run alert p99: " + "; ".join(
                 f"{k} {', '.join(f'{x:.0f}' for x in v)} ms" for k, v in p99s.items()) +
             f". Latency over {args.samples} alerts per run and tree (every 100th event is a "
             "`fall`, one every 100 ms). The supervisor runs as its own process "
             "(`custody supervisor`); every measurement shares one Mosquitto and this machine, "
             "one after the other in each run (trees interleaved). Load average (1 min) after "
             f"each run: {', '.join(f'{x:.1f}' for x in loads)} on {os.cpu_count()} cores "
             "shared with other jobs, so the latency figures mostly measure queueing behind "
             "them.\n")
    print(body)
    write_section("Supervisor ingest and alert latency", command_line(), body)


if __name__ == "__main__":
    main()
