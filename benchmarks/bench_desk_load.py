"""Does an open desk slow the supervisor? Ingest rate and alert latency, desk off vs desk on
with pages watching, side by side in one run.

`custody supervisor` runs as its own process on the demo site, in each of these modes in
turn (`--modes`), alternating for `--repeats` rounds:

- off: no desk;
- idle: the desk served, no page open;
- readers: the desk and N plain HTTP clients reading its event streams (one the floor's, the
  others the alert queue's). The supervisor does all the work of serving N pages and no
  browser takes CPU: staff's browsers run on their own computers;
- away: N signed-in Chromium pages (one on the floor, the rest on the alert queue) on this
  machine at the lowest priority (their session's autogroup at nice 19, see
  benchmarks/autogroup.py): they take only the CPU the supervisor leaves;
- on: the same pages at the normal priority. Chromium runs in a session of its own, so on a
  kernel with autogroup scheduling it gets as much of a busy CPU as the supervisor's whole
  session: this is the supervisor with a browser on its own two cores.

In each mode:

1. live ingest: N signed door events published at full speed (QoS 1) while the supervisor
   runs; rate = N / (last signed ack - first publish). Door events change the floor, so
   every one of them makes the desk rebuild and push.
2. alert latency: bench_ingest's measure (1,000 events/s background, a `fall` every 100 ms,
   alert message received - event sent).

    .venv/bin/python -m benchmarks.bench_desk_load [--events 5000] [--repeats 2] [--browsers 2]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from benchmarks.autogroup import autogroup_nice, lower_sessions
from benchmarks.bench_ingest import (
    DEMO_SITE,
    KEYS,
    TOPICS,
    Counter,
    alert_latency,
    client,
    payloads,
    stop,
)
from benchmarks.results import command_line, write_section
from custody.broker import Mosquitto
from protocol.keys import dump_keys
from protocol.passwords import hash_password, mosquitto_hash, write_file

PASSWORD = "bench-desk-load-password"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def start(broker: Mosquitto, tmp: Path, desk_port: int | None) -> subprocess.Popen[bytes]:
    """`custody supervisor` on a fresh journal, with the desk when given a port."""
    keys = tmp / "keys.toml"
    keys.write_text(dump_keys(KEYS))
    accounts = tmp / "accounts.json"
    write_file(accounts, {"version": 1, "history": [], "accounts": {"sup1": {
        "name": "Bench", "sex": "f", "roles": ["custody-supervisor"], "enabled": True,
        "hash": hash_password(PASSWORD), "broker_hash": mosquitto_hash(PASSWORD)}}})
    # A fresh journal needs a fresh checkpoint: the supervisor refuses a journal shorter than
    # its signed checkpoint says (entries missing), and snapshots of another journal.
    for f in [*tmp.glob("journal.db*"), *tmp.glob("cp.json*")]:
        if f.is_dir():
            shutil.rmtree(f)
        else:
            f.unlink()
    probe = client(broker, f"probe-{time.monotonic_ns()}")
    online = threading.Event()
    probe.on_message = lambda c, u, m: online.set() if m.payload == b"online" else None
    probe.subscribe(TOPICS.supervisor("availability"), qos=1)
    desk = ["--desk-port", str(desk_port)] if desk_port is not None else []
    proc = subprocess.Popen([sys.executable, "-m", "custody", "supervisor", "--config",
                             str(DEMO_SITE), "--keys", str(keys), "--db", str(tmp / "journal.db"),
                             "--checkpoint", str(tmp / "cp.json"), "--host", broker.host,
                             "--port", str(broker.port), "--accounts", str(accounts), *desk],
                            stdout=subprocess.DEVNULL)
    assert online.wait(30), "supervisor did not come up"
    probe.disconnect()
    probe.loop_stop()
    time.sleep(1.0)
    return proc


def live_rate(broker: Mosquitto, n: int, epoch: int) -> float:
    """Publish n events at full speed; events/s until the last one is acked."""
    items = payloads(n, epoch)
    counter = Counter(n)
    sub = client(broker, f"ack-{epoch}")
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
    pub = client(broker, f"pub-{epoch}")
    t0 = time.perf_counter()
    infos = [pub.publish(topic, p, qos=1) for topic, _n, _s, p in items]
    for info in infos:
        info.wait_for_publish(60)
    assert counter.done.wait(300), f"only {len(counter.seen)} of {n} acked"
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    return n / (last[0] - t0)


def open_browsers(url: str, n: int, nice: int = 0) -> tuple[Any, Any, list[Any]]:
    """n signed-in pages: the first on the floor, the others on the alert queue; Chromium at
    `nice` (its driver, browser and renderers inherit this thread's nice value)."""
    from playwright.sync_api import sync_playwright

    wait_listening(url, 60)
    old = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, nice)
    try:
        pw = sync_playwright().start()
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, old)  # (root: may go back down)
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
    if nice > 0:
        # Chromium runs in a session of its own, so its nice value alone does not lower its
        # share of the CPU: its session's autogroup must be lowered (benchmarks/autogroup.py).
        leaders = lower_sessions(nice)
        assert any(autogroup_nice(p) == nice for p in leaders), "browser not lowered"
    pages = []
    for i in range(n):
        page = browser.new_context().new_page()
        page.goto(url + "/signin")
        page.get_by_label("User").fill("sup1")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/floor")
        if i:
            page.goto(url + "/alerts")
        # (a locator, not wait_for_function: the desk's CSP forbids the eval it polls with)
        page.locator("body[data-count]").wait_for(state="attached", timeout=60_000)
        pages.append(page)
    return pw, browser, pages


def open_readers(url: str, n: int) -> list[Any]:
    """n plain HTTP clients reading the desk's event streams (the floor, then the alert
    queue), signed in through one page that is closed before the run: the desk's own cost of
    its streams, without any browser's CPU."""
    import http.client
    from urllib.parse import urlsplit

    pw, browser, pages = open_browsers(url, 1)
    cookie = next(c for c in pages[0].context.cookies() if c["name"] == "desk_session")
    browser.close()
    pw.stop()
    u = urlsplit(url)
    conns = []
    for i in range(n):
        conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=600)
        conn.request("GET", f"/events?view={'floor' if i == 0 else 'alerts'}",
                     headers={"Cookie": f"desk_session={cookie['value']}"})
        resp = conn.getresponse()
        threading.Thread(target=lambda r=resp: [None for _ in iter(r.fp.readline, b"")],
                         daemon=True).start()
        conns.append(conn)
    return conns


def wait_listening(url: str, timeout: float) -> None:
    """Until the desk accepts connections (on a busy machine it may follow the supervisor's
    MQTT 'online' by seconds)."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((u.hostname, u.port), 1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def free_port() -> int:
    """A free TCP port on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> int:
    """Measure and write the RESULTS.md section."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--browsers", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--modes", default="off,readers,away,on",
                    help="comma-separated, of off, idle, readers, away, on (see above)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-desk-load-"))
    modes = tuple(args.modes.split(","))
    rates: dict[str, list[float]] = {m: [] for m in modes}
    lats: dict[str, list[float]] = {m: [] for m in modes}
    p50s: dict[str, list[float]] = {m: [] for m in modes}  # each round's, for the ratios
    epoch = 100
    with Mosquitto() as broker:
        for run in range(args.repeats):
            for mode in modes:
                port = free_port() if mode != "off" else None
                proc = start(broker, tmp, port)
                pw = browser = None
                conns: list[Any] = []
                try:
                    if mode == "readers":
                        conns = open_readers(f"http://127.0.0.1:{port}",
                                             args.browsers)
                    elif mode in ("on", "away"):
                        pw, browser, _pages = open_browsers(f"http://127.0.0.1:{port}",
                                                            args.browsers,
                                                            19 if mode == "away" else 0)
                    epoch += 1
                    rates[mode].append(live_rate(broker, args.events, epoch))
                    epoch += 1
                    run_lats = alert_latency(broker, args.samples, 1000, epoch)
                    lats[mode] += run_lats
                    p50s[mode].append(statistics.median(run_lats))
                finally:
                    for conn in conns:
                        conn.close()
                    if browser is not None:
                        browser.close()
                    if pw is not None:
                        pw.stop()
                    stop(proc)
                print(f"run {run} desk {mode}: {rates[mode][-1]:,.0f} events/s, alert "
                      f"latency p50 {statistics.median(run_lats):.1f} ms", flush=True)

    def pct(xs: list[float], p: float) -> float:
        s = sorted(xs)
        return s[min(len(s) - 1, int(p / 100 * len(s)))]

    rows = []
    labels = {"off": "no desk", "idle": "desk, no page open",
              "readers": f"desk + {args.browsers} plain stream readers",
              "away": f"desk + {args.browsers} browsers at the lowest priority",
              "on": f"desk + {args.browsers} browsers at the normal priority"}
    for mode in modes:
        label = labels[mode]
        rows.append((f"live ingest, {label} (median of {args.repeats})",
                     f"{statistics.median(rates[mode]):,.0f} events/s "
                     f"({', '.join(f'{r:,.0f}' for r in rates[mode])})"))
        rows.append((f"alert latency p50 / p99, {label} ({len(lats[mode])} alerts)",
                     f"{statistics.median(lats[mode]):.1f} / {pct(lats[mode], 99):.1f} ms"))
        if mode != "off" and "off" in modes:
            # The machine's load drifts between rounds: each round against its own no-desk run.
            ratios = [m / o for m, o in zip(p50s[mode], p50s["off"], strict=True)]
            rows.append((f"alert latency p50 ÷ no desk's in the same round, {label}",
                         f"median {statistics.median(ratios):.2f} "
                         f"({', '.join(f'{r:.2f}' for r in ratios)})"))
    body = "| figure | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)
    load = os.getloadavg()
    body += (f"\n{args.events} signed door events per run published at full speed (QoS 1) to "
             "a running `custody supervisor` (demo site); rate until the last signed ack. "
             "With the desk: one page or stream reader on the floor (every door event changes "
             "it), the others on the alert queue, each with its own event stream. Plain "
             "stream readers: the supervisor's whole cost of serving the pages, with the "
             "browsers elsewhere, as on the staff's computers. Browsers at the lowest "
             "priority: Chromium on the same cores, its session's autogroup at nice 19. At "
             "the normal priority: its session gets as much of a busy CPU as the "
             "supervisor's. Supervisor and load generator at the normal priority. Modes "
             "alternate within each round "
             f"on one Mosquitto. Load average (1/5/15 min) at the end: {load[0]:.1f} / "
             f"{load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores shared with other "
             "jobs.\n")
    print(body)
    if not args.no_write:
        write_section("Supervisor with the desk open", command_line(), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
