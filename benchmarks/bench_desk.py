"""Desk latency: alert raised -> row visible in a browser, p50/p99, against MQTT delivery.

A real Mosquitto and a supervisor serving its desk (in this process, as `custody supervisor
--desk-port` runs it); Debian's Chromium signed in on the alert queue. Each trial sends the
signed node event that puts a new, unregistered band in a room (the `unknown-band` rule is
immediate), then takes three times: the event published, the alert message received by an
MQTT subscriber, and the alert's row added to the page (a MutationObserver stamps it with the
browser's wall clock; same machine, same clock). `--browsers N` opens more signed-in pages
(each holds its own event stream) to show the cost of watchers.

    .venv/bin/python -m benchmarks.bench_desk [--alerts 100] [--browsers 2]
"""

import argparse
import dataclasses
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results import command_line, write_section
from custody.broker import BrokerConfig, Mosquitto
from protocol.transport import LinkConf
from tests.supervisor_support import KEYS, ROOM_NODE, Driver, make_site, sped_up

PASSWORD = "bench-desk-password"
OBSERVER = """
window.__seen = {};
new MutationObserver(() => {
  for (const tr of document.querySelectorAll('tr[data-alert]')) {
    const id = tr.dataset.alert;
    if (!(id in window.__seen)) { window.__seen[id] = Date.now(); }
  }
}).observe(document.getElementById('view'), {childList: true, subtree: true});
"""


def percentile(xs: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def main() -> int:
    """Measure and write the RESULTS.md section."""
    from playwright.sync_api import sync_playwright

    from supervisor.accounts import Directory, hash_password
    from supervisor.desk import Desk
    from supervisor.service import Supervisor

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", type=int, default=100)
    ap.add_argument("--browsers", type=int, default=2, help="signed-in pages watching")
    ap.add_argument("--gap-ms", type=int, default=200, help="between trials")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-desk-"))
    broker = Mosquitto(BrokerConfig())
    broker.start()
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
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                 args=["--no-sandbox", "--disable-gpu",
                                       "--disable-background-networking"])
    pages = []
    for _ in range(max(1, args.browsers)):
        page = browser.new_context().new_page()
        page.goto(desk.url + "/signin")
        page.get_by_label("User").fill("sup1")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/floor")
        page.goto(desk.url + "/alerts")
        page.wait_for_function("document.body.dataset.count !== undefined")
        page.evaluate(OBSERVER)
        pages.append(page)
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
            elif line.startswith("data: ") and event == "view":
                html, now = json.loads(line[6:])["html"], time.time()
                for band in list(sent):
                    if band not in streamed and band in html:
                        streamed[band] = now

    threading.Thread(target=read_stream, daemon=True).start()
    time.sleep(1.0)
    for i in range(args.alerts):
        band = f"{0xbe00000000 + i:010x}"
        room = rooms[i % len(rooms)]
        sent[band] = (time.time(), room)
        driver.event(ROOM_NODE[room], "presence.enter",
                     {"band": band, "room": room, "reader": f"{room}-uhf"})
        time.sleep(args.gap_ms / 1000)
    time.sleep(2.0)
    seen_page = pages[0].evaluate("window.__seen")
    ids = {a["id"]: a for a in sup.submit(lambda: list(sup.state.alerts.values()))}
    to_browser, to_mqtt, to_stream = [], [], []
    for aid, a in ids.items():
        if a["rule"] != "unknown-band":
            continue
        band = a["message"].split()[2]
        if band not in sent or aid not in seen_page:
            continue
        t0 = sent[band][0]
        to_browser.append((seen_page[aid] / 1000 - t0) * 1000)
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
    load = os.getloadavg()
    lines = [
        "| figure | value |", "|---|---|",
        f"| alerts seen in the browser / sent | {n} / {args.alerts} |",
        f"| event sent → row visible in the browser, p50 | {percentile(to_browser, 50):.1f} ms |",
        f"| event sent → row visible in the browser, p99 | {percentile(to_browser, 99):.1f} ms |",
        f"| event sent → row sent on the desk's event stream, p50 | "
        f"{percentile(to_stream, 50):.1f} ms |",
        f"| event sent → row sent on the desk's event stream, p99 | "
        f"{percentile(to_stream, 99):.1f} ms |",
        f"| event sent → alert on MQTT, p50 | {percentile(to_mqtt, 50):.1f} ms |",
        f"| event sent → alert on MQTT, p99 | {percentile(to_mqtt, 99):.1f} ms |",
    ]
    body = "\n".join(lines) + (
        f"\n\n{args.alerts} trials, one every {args.gap_ms} ms, each a new unregistered band "
        f"entering a room (immediate `unknown-band` alert); {len(pages)} signed-in browser "
        "pages on the alert queue, each with its own event stream; the first page's rows are "
        "timed. The desk's time includes the MQTT path (event → supervisor → alert) plus the "
        "snapshot, render and push; the event-stream rows are the same stream read by a plain "
        "HTTP client (what the desk sends, before any browser work). Load average "
        "(1/5/15 min) at the end: "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores shared with "
        "other jobs.\n")
    print(body)
    if not args.no_write:
        write_section("Desk: alert to browser", command_line(), body)
    return 0 if n == args.alerts else 1


if __name__ == "__main__":
    sys.exit(main())
