"""End-to-end alert latency from the device: reader bytes on a pty -> room agent -> Mosquitto ->
supervisor -> alert on the alert topic, p50/p99, with 1,000 events/s of background load.

Every trial puts a new, unregistered band into the UHF field of a room node (one inventory
notice written to the reader's pty); the supervisor's `unknown-band` rule is immediate (grace
0), so the latency is alert received minus bytes written, nothing to subtract. Background:
a fleet of simulated room nodes (benchmarks/fleet.py) sending sealed events to the same
supervisor at `--rate` events/s in total.

    .venv/bin/python -m benchmarks.bench_alert_latency [--trials 200] [--rate 1000] [--rooms 50]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.fleet import Fleet, write_fleet
from benchmarks.results import command_line, write_section
from custody.broker import BrokerConfig, Mosquitto
from edge_agent.drivers import uhf_m100
from protocol.topics import Topics
from tests.agent_support import Pty
from tests.fault_support import AlertListener, Proc, journal_rows, supervisor_argv, wait_until

SITE = "lat-site"
NODE, KEY = "node-lat", bytes(range(7, 39))
AGENT_NODE = f"""
[[rooms]]
id = "room-lat"
kind = "information"
[[doors]]
id = "d-lat"
between = ["room-lat", "corridor"]
[[nodes]]
id = "{NODE}"
room = "room-lat"
[[nodes.readers]]
id = "uhf-lat"
type = "uhf"
role = "presence"
port = "/dev/null"
"""


def percentile(xs: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def main() -> int:
    """Measure and write the RESULTS.md section."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--rate", type=float, default=1000.0, help="background events/s")
    ap.add_argument("--rooms", type=int, default=50, help="simulated rooms in the background")
    ap.add_argument("--interval", type=float, default=0.25, help="seconds between trials")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="custody-latency-") as tmp, \
            Mosquitto(BrokerConfig()) as broker:
        d = Path(tmp)
        site = write_fleet(d, SITE, args.rooms, AGENT_NODE, {NODE: KEY}, broker.port)
        (d / "node.key").write_text(KEY.hex())
        uhf = Pty()
        (d / "agent.toml").write_text(
            f'[agent]\nnode = "{NODE}"\nsite = "site.toml"\nkey_file = "node.key"\n'
            f'outbox = "outbox.db"\nvision = false\nhealth_interval_s = 5\n'
            f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
            f'[readers.uhf-lat]\nport = "{uhf.name}"\nstart_inventory = false\n')
        db = d / "journal.db"
        sup = Proc(supervisor_argv(site, d / "keys.toml", db, broker.host, broker.port),
                   d / "supervisor.log").start()
        agent = Proc([sys.executable, "-m", "custody", "agent", "--config",
                      str(d / "agent.toml")], d / "agent.log").start()
        alerts = AlertListener(broker.host, broker.port, Topics(SITE).base)
        fleet = Fleet(broker.host, broker.port, SITE, args.rooms, args.rate)
        lat: list[float] = []
        sent_wall: dict[str, int] = {}
        lost = 0
        try:
            wait_until(lambda: any(r[4] == "availability" for r in journal_rows(db)), 60,
                       "the agent online", agent, sup)
            fleet.start()
            time.sleep(5.0)  # background at full rate first
            j0, t0 = len(journal_rows(db, "event")), time.monotonic()
            for i in range(args.trials):
                band = f"{0xC000000000 + i:010x}"
                sent = time.monotonic()
                sent_wall[band] = int(time.time() * 1000)
                uhf.write(uhf_m100.inventory_notice(uhf_m100.band_epc(band), rssi=-50))
                deadline = sent + 15
                got = None
                while time.monotonic() < deadline and got is None:
                    got = next((m["_rx"] for m in alerts.of("unknown-band", "raised")
                                if band in m["message"]), None)
                    time.sleep(0.002)
                if got is None:
                    lost += 1
                else:
                    lat.append((got - sent) * 1000)
                time.sleep(max(0.0, args.interval - (time.monotonic() - sent)))
            elapsed = time.monotonic() - t0
            journaled = (len(journal_rows(db, "event")) - j0) / elapsed
            sent_rate = fleet.sent / (time.monotonic() - t0 + 5.0)
            # Where the time goes: device -> node commit (envelope ts), node commit ->
            # supervisor raising the alert (raised_ts), both wall-clock milliseconds.
            commit: dict[str, int] = {}
            for *_, payload in journal_rows(db, "event"):
                env = json.loads(json.loads(payload)["env"])
                if env["type"] == "presence.enter" and env["body"]["band"] in sent_wall:
                    commit[env["body"]["band"]] = env["ts"]
            raised = {b: m["raised_ts"] for m in alerts.of("unknown-band", "raised")
                      for b in sent_wall if b in m["message"]}
            to_node = [commit[b] - sent_wall[b] for b in commit]
            to_alert = [raised[b] - commit[b] for b in raised if b in commit]
        finally:
            fleet.stop()
            alerts.close()
            agent.stop()
            sup.stop()
            uhf.close()
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    slow = sorted(x for x in lat if x > 1000)
    print(f"device->node commit p50/p99 {percentile(to_node, 50)}/{percentile(to_node, 99)} ms; "
          f"node commit->alert raised p50/p99 {percentile(to_alert, 50)}/"
          f"{percentile(to_alert, 99)} ms; over 1 s: {len(slow)} {slow[:10]}")
    print(f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(lat):.1f} ms, n {len(lat)}, lost {lost}, "
          f"background sent {sent_rate:.0f}/s, journaled {journaled:.0f}/s")
    write_section("End-to-end alert latency from the device", command_line(), (
        "A new unregistered band written as one UHF inventory notice to a room node's reader "
        "pty; the real `custody agent` turns it into `presence.enter`, Mosquitto carries it, "
        "the real `custody supervisor` journals it and raises `unknown-band` (an immediate "
        "rule: grace 0, nothing subtracted). Latency = alert received on "
        "`alert/warning/unknown-band` − bytes written. Background: "
        f"{args.rooms} simulated room nodes sending sealed events at {args.rate:.0f}/s to the "
        "same supervisor.\n\n"
        "| trials | alerts | p50 ms | p99 ms | max ms | background sent/s | journaled/s |\n"
        "|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {args.trials} | {len(lat)} | **{p50:.0f}** | **{p99:.0f}** | {max(lat):.0f} | "
        f"{sent_rate:.0f} | {journaled:.0f} |\n\n"
        "Where the time goes (wall clock, p50 / p99): device bytes → node's outbox commit "
        f"{percentile(to_node, 50):.0f} / {percentile(to_node, 99):.0f} ms; node commit → "
        f"supervisor raises the alert {percentile(to_alert, 50):.0f} / "
        f"{percentile(to_alert, 99):.0f} ms. Trials over 1 s: {len(slow)} "
        f"({', '.join(f'{x / 1000:.1f} s' for x in slow[:8])}).\n\n"
        "The supervisor's own figure (event injected straight into MQTT, no room node) is in "
        "its section; this one adds the node: pty, parser, outbox commit (fsync) and publish."))
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
