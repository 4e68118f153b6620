"""Supervisor ingest rate vs raw paho -> Mosquitto -> paho, and alert latency under load.

Side by side in one run, on one fresh Mosquitto:
1. raw: a paho client publishes N signed event payloads (QoS 1) that another paho client
   receives; rate = N / time until the last one arrives.
2. supervisor: the same N payloads published on node event topics to a `custody supervisor`
   process; rate = N / time until the last signed ack arrives (an ack is sent only after the
   event is verified, committed to the journal and folded into the state; the rules run
   after every batch).
3. alert latency: while 1,000 events/s of background load flow in, a `fall` behaviour event
   (an immediate rule) is sent every 100 ms; latency = alert message received - event sent.

Usage: .venv/bin/python -m benchmarks.bench_ingest [--events 5000] [--repeats 3]
"""

import argparse
import json
import statistics
import subprocess
import sys
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
    """n door events spread over the room nodes: (topic, node, seq, payload)."""
    out = []
    per = {node: start_seq for node in NODES}
    now = int(time.time() * 1000)
    for i in range(n):
        node = NODES[i % len(NODES)]
        seq = per[node]
        per[node] += 1
        out.append((TOPICS.node(node, "event"), node, seq,
                    seal(KEYS[node], node, epoch, seq, now, "door",
                         {"door": "d-exit", "state": "open" if i % 2 else "closed"})))
    return out


def client(broker: Mosquitto, name: str) -> mqtt.Client:
    c = make_client(name, LinkConf(broker.host, broker.port))
    c.connect(broker.host, broker.port, 30)
    c.loop_start()
    return c


def publish_all(pub: mqtt.Client, items: list[tuple[str, str, int, bytes]]) -> None:
    infos = [pub.publish(topic, p, qos=1) for topic, _n, _s, p in items]
    for info in infos[-1:]:
        info.wait_for_publish(60)


def raw_rate(broker: Mosquitto, n: int, run: int) -> float:
    items = payloads(n, 1)
    counter = Counter(n)
    sub = client(broker, f"raw-sub-{run}")
    ready = threading.Event()
    sub.on_subscribe = lambda *a: ready.set()

    def on_message(c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        env = json.loads(json.loads(m.payload)["env"])
        counter.add([(env["node"], env["seq"])])

    sub.on_message = on_message
    sub.subscribe(f"raw{run}/#", qos=1)
    ready.wait(5)
    pub = client(broker, f"raw-pub-{run}")
    raw_items = [(f"raw{run}/{node}/{seq}", node, seq, p) for _t, node, seq, p in items]
    t0 = time.perf_counter()
    publish_all(pub, raw_items)
    assert counter.done.wait(120), "raw run did not complete"
    dt = time.perf_counter() - t0
    for c in (sub, pub):
        c.disconnect()
        c.loop_stop()
    return n / dt


def start_supervisor(broker: Mosquitto, tmp: Path) -> subprocess.Popen[bytes]:
    keys = tmp / "keys.toml"
    keys.write_text(dump_keys(KEYS))
    for f in tmp.glob("journal.db*"):
        f.unlink()
    proc = subprocess.Popen([sys.executable, "-m", "custody", "supervisor", "--config",
                             str(DEMO_SITE), "--keys", str(keys), "--db", str(tmp / "journal.db"),
                             "--checkpoint", str(tmp / "cp.json"), "--host", broker.host,
                             "--port", str(broker.port)], stdout=subprocess.DEVNULL)
    probe = client(broker, "probe")
    online = threading.Event()
    probe.on_message = lambda c, u, m: m.payload == b"online" and online.set()
    probe.subscribe(TOPICS.supervisor("availability"), qos=1)
    assert online.wait(20), "supervisor did not come up"
    probe.disconnect()
    probe.loop_stop()
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def supervisor_rate(broker: Mosquitto, n: int, run: int, epoch: int) -> float:
    items = payloads(n, epoch)
    counter = Counter(n)
    sub = client(broker, f"ack-sub-{run}")
    ready = threading.Event()
    sub.on_subscribe = lambda *a: ready.set()

    def on_message(c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        env = json.loads(json.loads(m.payload)["env"])
        counter.add([(env["node"], s) for s in env["body"]["seqs"]])

    sub.on_message = on_message
    sub.subscribe(TOPICS.node_filter("ack"), qos=1)
    ready.wait(5)
    pub = client(broker, f"sup-pub-{run}")
    t0 = time.perf_counter()
    publish_all(pub, items)
    assert counter.done.wait(300), f"only {len(counter.seen)} of {n} acked"
    dt = time.perf_counter() - t0
    for c in (sub, pub):
        c.disconnect()
        c.loop_stop()
    return n / dt


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
    t0 = time.perf_counter()
    for i in range(total):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        now = int(time.time() * 1000)
        if i % 100 == 50 and i // 100 < samples:
            k = i // 100
            node, room = holding[k % len(holding)]
            body = {"id": f"f{k}", "phase": "new", "camera": f"cam-{room}", "room": room,
                    "cls": "fall", "score_pct": 90}
            etype = "behaviour"
            with lock:
                sent[incident_id("fall", f"{node}/f{k}", now)] = time.perf_counter()
        else:
            node = NODES[i % len(NODES)]
            body, etype = {"door": "d-exit", "state": "open" if i % 2 else "closed"}, "door"
        seq = seqs[node]
        seqs[node] += 1
        pub.publish(TOPICS.node(node, "event"),
                    seal(KEYS[node], node, epoch, seq, now, etype, body), qos=1)
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--load", type=int, default=1000, help="background events per second")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    raws, sups, lats = [], [], []
    with Mosquitto() as broker:
        for run in range(args.repeats):
            raws.append(raw_rate(broker, args.events, run))
            proc = start_supervisor(broker, tmp)
            try:
                sups.append(supervisor_rate(broker, args.events, run, epoch=1))
            finally:
                stop(proc)
            print(f"run {run}: raw {raws[-1]:.0f}/s, supervisor {sups[-1]:.0f}/s", flush=True)
        proc = start_supervisor(broker, tmp)
        try:
            lats = alert_latency(broker, args.samples, args.load, epoch=10)
        finally:
            stop(proc)
    raw, sup = statistics.median(raws), statistics.median(sups)
    lats.sort()
    p50 = statistics.median(lats)
    p99 = lats[min(len(lats) - 1, int(0.99 * len(lats)))]
    rows = [
        (f"raw paho → Mosquitto → paho, QoS 1 (median of {args.repeats})", f"{raw:,.0f} events/s"),
        ("supervisor ingest: verified, journaled (WAL, synchronous=FULL), state, rules, "
         "signed ack", f"{sup:,.0f} events/s"),
        ("**ratio supervisor / raw**", f"**{sup / raw:.2f}**"),
        (f"alert latency p50 (fall event sent → alert received), {args.load} events/s "
         "background", f"{p50:.1f} ms"),
        ("alert latency p99", f"{p99:.1f} ms"),
    ]
    body = "| figure | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)
    body += (f"\n{args.events} signed door events per run from {len(NODES)} nodes; runs: raw "
             f"{', '.join(f'{r:,.0f}' for r in raws)}; supervisor "
             f"{', '.join(f'{s:,.0f}' for s in sups)}. Latency over {len(lats)} alerts (every "
             "100th event is a `fall`, one every 100 ms). The supervisor runs as its own process "
             "(`custody supervisor`); both measurements share one Mosquitto and this machine.\n")
    print(body)
    write_section("Supervisor ingest and alert latency", command_line(), body)


if __name__ == "__main__":
    main()
