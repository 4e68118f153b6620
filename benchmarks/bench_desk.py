"""Desk latency: alert raised -> row visible in a browser, p50/p99, against MQTT delivery.

A real Mosquitto and a supervisor serving its desk (in this process, as `custody supervisor
--desk-port` runs it); Debian's Chromium signed in on the alert queue. Each trial sends the
signed node event that puts a new, unregistered band in a room (the `unknown-band` rule is
immediate), then takes three times: the event published, the alert message received by an
MQTT subscriber, and the alert's row added to the page (a MutationObserver stamps it with the
browser's wall clock; same machine, same clock), and the frame that draws it (a task queued
from that frame's animation callbacks runs once it is drawn: the row is on screen); and the
timed page's CPU time and main-thread tasks over 50 ms (what delays a row). `--browsers N`
opens more signed-in pages (each holds its own event stream) to show the cost of watchers.

`--with-demo` runs `custody demo` beside it for the whole measurement (its own broker,
supervisor, desk, simulated nodes and staff, a Chromium page on its floor): the issue's
condition, the demo running on the same machine. Trials start once the demo's day is 10 %
through (everything up and busy); the demo must still be running when they end.

    .venv/bin/python -m benchmarks.bench_desk [--alerts 100] [--browsers 2] [--with-demo]
"""

import argparse
import atexit
import contextlib
import dataclasses
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.autogroup import autogroup_nice
from benchmarks.results import command_line, write_section
from custody.broker import BrokerConfig, Mosquitto
from protocol.transport import LinkConf
from sim.priority import SIM_NICE, raise_priority, restore_priority
from tests.supervisor_support import KEYS, ROOM_NODE, Driver, make_site, sped_up

PASSWORD = "bench-desk-password"
OBSERVER = """
window.__seen = {}; window.__painted = {}; window.__inFrame = false; window.__long = [];
// Main-thread tasks over 50 ms (what keeps a page from showing a row at once).
new PerformanceObserver((l) => { for (const e of l.getEntries()) { window.__long.push(e.duration); }
}).observe({type: 'longtask'});
// Whether a change is made inside an animation-frame callback (the page's script applies
// updates there): that frame draws it. Otherwise the next frame does.
const raf = window.requestAnimationFrame.bind(window);
window.requestAnimationFrame = (cb) => raf((t) => {
  window.__inFrame = true;
  try { cb(t); } finally { queueMicrotask(() => { window.__inFrame = false; }); }
});
new MutationObserver(() => {
  const fresh = [];
  for (const tr of document.querySelectorAll('tr[data-alert]')) {
    const id = tr.dataset.alert;
    if (!(id in window.__seen)) { window.__seen[id] = Date.now(); fresh.push(id); }
  }
  if (!fresh.length) { return; }
  // A task queued from inside a frame runs once that frame is drawn.
  const stamp = () => setTimeout(() => {
    const t = Date.now();
    for (const id of fresh) { window.__painted[id] = t; }
  }, 0);
  if (window.__inFrame) { stamp(); } else { raf(stamp); }
}).observe(document.getElementById('view'), {childList: true, subtree: true});
"""


METRICS = ("ProcessTime", "ThreadTime", "ScriptDuration", "RecalcStyleDuration",
           "LayoutDuration", "LayoutCount")


def page_metrics(cdp: Any) -> dict[str, float]:
    """Chromium's running totals for a page (seconds of main-thread time)."""
    got = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return {k: float(got.get(k, 0.0)) for k in METRICS}


def percentile(xs: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


class Demo:
    """`custody demo --plain` as a subprocess, its output read by a thread."""

    def __init__(self, workdir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "custody", "demo", "--plain", "--workdir", str(workdir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)  # its own process group: see stop()
        self.lines: list[str] = []
        self.desk: tuple[str, str, str] | None = None
        self.busy = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            m = re.match(r"desk: (\S+) user (\S+) password (\S+)", line)
            if m:
                self.desk = (m[1], m[2], m[3])
            if re.match(r"progress\s+10 %", line):
                self.busy.set()

    def wait_busy(self, timeout: float) -> None:
        """Until the day is 10 % through, or fail with the demo's output."""
        if not self.busy.wait(timeout) or self.desk is None:
            self.stop()
            raise SystemExit("custody demo did not get going:\n" + "\n".join(self.lines[-20:]))

    def running(self) -> bool:
        """Still running its day."""
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (it stops its processes and broker; SIGINT is ignored when this runs as a
        background job), wait, then kill whatever of its group is left."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def sign_in(browser: Any, url: str, user: str, password: str, view: str) -> Any:
    """A fresh context signed in through the form, on `view`, its stream up."""
    page = browser.new_context().new_page()
    page.goto(url + "/signin")
    page.get_by_label("User").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/floor")
    if view != "floor":
        page.goto(url + "/" + view)
    page.locator("body[data-count]").wait_for(state="attached", timeout=60_000)
    return page


def main() -> int:
    """Measure and write the RESULTS.md section."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", type=int, default=100)
    ap.add_argument("--browsers", type=int, default=2, help="signed-in pages watching")
    ap.add_argument("--gap-ms", type=int, default=200, help="between trials")
    ap.add_argument("--with-demo", action="store_true",
                    help="run `custody demo` beside it (the issue's condition)")
    ap.add_argument("--browser-priority", choices=("normal", "demo"), default="normal",
                    help="Chromium at the normal priority (a person's browser) or at the one "
                         "custody demo gives its processes")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-desk-"))
    demo = Demo(tmp / "demo") if args.with_demo else None
    try:
        return measure(args, tmp, demo)
    finally:
        if demo is not None:
            demo.stop()


def measure(args: argparse.Namespace, tmp: Path, demo: Demo | None) -> int:
    """The trials (beside the demo when given one); writes the section."""
    from playwright.sync_api import sync_playwright

    from supervisor.accounts import Directory, hash_password
    from supervisor.desk import Desk
    from supervisor.service import Supervisor

    # Broker, supervisor, desk and the node-event driver at the priority `custody demo` gives
    # its own (sim/priority.py), so beside the demo they compete as its desk does; the
    # browsers, as a person's, at the normal one.
    nice = raise_priority()
    broker = Mosquitto(BrokerConfig())
    broker.start()
    atexit.register(broker.close)  # also when a step below fails (it left brokers running)
    site = dataclasses.replace(make_site(), timezone="Asia/Shanghai")
    clock = sped_up(1.0)
    accounts = Directory.from_records({"sup1": {
        "name": "Bench Supervisor", "sex": "f", "roles": ["custody-supervisor"],
        "enabled": True, "hash": hash_password(PASSWORD)}})
    sup = Supervisor(site, KEYS, tmp / "journal.db", tmp / "cp.json",
                     LinkConf(broker.host, broker.port), clock, accounts=accounts)
    desk = Desk(sup, "127.0.0.1", 0)
    desk.start()
    worker = threading.Thread(target=sup.run, daemon=True)
    worker.start()
    assert sup.subscribed.wait(10)
    driver = Driver(broker.host, broker.port, site, clock)
    mqtt_seen: dict[str, float] = {}
    orig: Any = driver.client.on_message

    def on_message(c: Any, u: Any, msg: Any) -> None:
        if "/alert/" in msg.topic:
            data = json.loads(msg.payload)
            if data["state"] == "raised":
                mqtt_seen.setdefault(data["room"] + "/" + data["message"].split()[2],
                                     time.time())
        orig(c, u, msg)

    driver.client.on_message = on_message
    if args.browser_priority == "normal":
        restore_priority(nice)
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                 args=["--no-sandbox", "--disable-gpu",
                                       "--disable-background-networking"])
    pages = []
    for _ in range(max(1, args.browsers)):
        page = sign_in(browser, desk.url, "sup1", PASSWORD, "alerts")
        page.evaluate(OBSERVER)
        pages.append(page)
    if demo is not None:
        demo.wait_busy(300)
        assert demo.desk is not None
        sign_in(browser, *demo.desk, "floor")  # someone watching the demo's own desk
    rooms = [r for r in ROOM_NODE if r not in ("entry", "exit")]  # the rule skips those
    sent: dict[str, tuple[float, str]] = {}
    # The same stream read by a plain HTTP client: when the desk sent the row (no browser).
    cookie = next(c for c in pages[0].context.cookies() if c["name"] == "desk_session")
    streamed: dict[str, float] = {}

    def read_stream() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", desk.port, timeout=60)
        conn.request("GET", "/events?view=alerts",
                     headers={"Cookie": f"desk_session={cookie['value']}"})
        resp = conn.getresponse()
        event = ""
        while True:
            line = resp.fp.readline().decode()
            if not line:
                return
            if line.startswith("event: "):
                event = line[7:].strip()
            elif line.startswith("data: ") and event in ("view", "rows"):
                now = time.time()  # the whole view, or the rows that changed
                for band in list(sent):
                    if band not in streamed and band in line:
                        streamed[band] = now

    threading.Thread(target=read_stream, daemon=True).start()
    time.sleep(1.0)
    # The timed page's own work (CPU time of its renderer and main thread; script, style and
    # layout time), from Chromium's performance metrics: the page's cost of the updates,
    # apart from time spent waiting for a CPU.
    cdp = pages[0].context.new_cdp_session(pages[0])
    cdp.send("Performance.enable")
    metrics_start = page_metrics(cdp)
    load_start = os.getloadavg()
    for i in range(args.alerts):
        band = f"{0xbe00000000 + i:010x}"
        room = rooms[i % len(rooms)]
        sent[band] = (time.time(), room)
        driver.event(ROOM_NODE[room], "presence.enter",
                     {"band": band, "room": room, "reader": f"{room}-uhf"})
        time.sleep(args.gap_ms / 1000)
    time.sleep(2.0)
    load = os.getloadavg()
    demo_ran = demo is None or demo.running()
    seen_page = pages[0].evaluate("window.__seen")
    painted_page = pages[0].evaluate("window.__painted")
    long_tasks = pages[0].evaluate("window.__long")
    metrics_end = page_metrics(cdp)
    work = {k: (metrics_end[k] - metrics_start[k]) * (1 if k.endswith("Count") else 1000)
            for k in METRICS}
    # From the journal: the live state lets closed alerts go (supervisor/state.py).
    ids = {m["id"]: m for m in sup.submit(lambda: [e.json() for e in sup.journal.entries()
                                                   if e.kind == "alert"])
           if m["state"] == "raised"}
    to_browser, to_painted, to_mqtt, to_stream = [], [], [], []
    for aid, a in ids.items():
        if a["rule"] != "unknown-band":
            continue
        band = a["message"].split()[2]
        if band not in sent or aid not in seen_page:
            continue
        t0 = sent[band][0]
        to_browser.append((seen_page[aid] / 1000 - t0) * 1000)
        if aid in painted_page:
            to_painted.append((painted_page[aid] / 1000 - t0) * 1000)
        if band in streamed:
            to_stream.append((streamed[band] - t0) * 1000)
        key = f"{a['room']}/{band}"
        if key in mqtt_seen:
            to_mqtt.append((mqtt_seen[key] - t0) * 1000)
    browser.close()
    pw.stop()
    driver.close()
    desk.stop()
    sup.stop_event.set()
    worker.join(10)
    broker.close()
    n = len(to_browser)
    if args.browser_priority == "demo":
        restore_priority(nice)
    lines = [
        "| figure | value |", "|---|---|",
        f"| alerts seen in the browser / sent | {n} / {args.alerts} |",
        f"| event sent → row on screen (its frame drawn), p50 | "
        f"{percentile(to_painted, 50):.1f} ms |",
        f"| event sent → row on screen (its frame drawn), p99 | "
        f"{percentile(to_painted, 99):.1f} ms |",
        f"| event sent → row in the page (DOM), p50 | {percentile(to_browser, 50):.1f} ms |",
        f"| event sent → row in the page (DOM), p99 | {percentile(to_browser, 99):.1f} ms |",
        f"| event sent → row sent on the desk's event stream, p50 | "
        f"{percentile(to_stream, 50):.1f} ms |",
        f"| event sent → row sent on the desk's event stream, p99 | "
        f"{percentile(to_stream, 99):.1f} ms |",
        f"| the timed page's CPU during the trials: renderer process / main thread | "
        f"{work['ProcessTime']:.0f} / {work['ThreadTime']:.0f} ms |",
        f"| of which script / style / layout (layouts) | {work['ScriptDuration']:.0f} / "
        f"{work['RecalcStyleDuration']:.0f} / {work['LayoutDuration']:.0f} ms "
        f"({work['LayoutCount']:.0f}) |",
        f"| the timed page's main-thread tasks over 50 ms: count, total | "
        f"{len(long_tasks)}, {sum(long_tasks):.0f} ms |",
        f"| event sent → alert on MQTT, p50 | {percentile(to_mqtt, 50):.1f} ms |",
        f"| event sent → alert on MQTT, p99 | {percentile(to_mqtt, 99):.1f} ms |",
    ]
    prio = (f"Broker, supervisor and desk at the priority `custody demo` gives its processes "
            f"(nice {os.getpriority(os.PRIO_PROCESS, 0) if nice is None else SIM_NICE}), "
            "Chromium at "
            + ("that priority too. " if args.browser_priority == "demo" else
               "the normal one (nice 0, as a person's browser). ")
            + ("Chromium and the demo each run in a session of their own; with autogroup "
               "scheduling (on here) sessions share a busy CPU equally, and nice values "
               "order processes only within a session (benchmarks/autogroup.py). "
               if autogroup_nice(os.getpid()) is not None else ""))
    with_demo = ("With `custody demo` running beside it the whole time (its day 10 % "
                 "through when the trials began; its own broker, supervisor, desk, simulated "
                 "nodes and staff, and a Chromium page on its floor). " if demo else
                 "Without the demo. ")
    body = "\n".join(lines) + (
        f"\n\n{with_demo}{prio}{args.alerts} trials, one every {args.gap_ms} ms, each a new "
        "unregistered band "
        f"entering a room (immediate `unknown-band` alert); {len(pages)} signed-in browser "
        "pages on the alert queue, each with its own event stream; the first page's rows are "
        "timed. The desk's time includes the MQTT path (event → supervisor → alert) plus the "
        "snapshot, render and push; the event-stream rows are the same stream read by a plain "
        "HTTP client (what the desk sends, before any browser work). Load average "
        f"(1/5/15 min) when the trials began: {load_start[0]:.1f} / {load_start[1]:.1f} / "
        f"{load_start[2]:.1f}, at the end: "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores shared with "
        "other jobs.\n")
    print(body)
    if not demo_ran:
        print("custody demo had stopped before the trials ended:\n" + "\n".join(
            demo.lines[-20:] if demo else []))
        return 1
    if not args.no_write:
        name = "Desk: alert to browser" + (", demo running" if demo else "") + (
            ", browser at the demo's priority" if args.browser_priority == "demo" else "")
        write_section(name, command_line(), body)
    return 0 if n == args.alerts and len(to_painted) == n else 1


if __name__ == "__main__":
    sys.exit(main())
