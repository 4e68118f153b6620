"""Room-node CPU and memory, with and without vision, under a realistic device load.

Runs the real `custody agent` twice against a real Mosquitto (an acker in this script plays
the supervisor's ack so the outbox stays small): once with `vision = false`, once with the
room's camera fed a 640x480 15 fps video of a person (real pixels through motion gating,
BlazePose and the behaviour classifier). Device load in both runs: a UHF presence reader
reporting 4 bands every 200 ms, a desk tap every 5 s, the door opening/closing every 10 s.
CPU is the agent's user+system time over the measured window (100 % = one core); memory is
its RSS (mean and max of 1 s samples) and peak RSS (VmHWM).

    .venv/bin/python -m benchmarks.bench_node_resources [--seconds 60] [--warmup 15]
"""

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_soak import status_kb
from benchmarks.results import command_line, write_section
from custody.broker import BrokerConfig, Mosquitto
from edge_agent.drivers import rdm6300, uhf_m100
from protocol.envelope import VerifyError, verify
from protocol.topics import Topics
from protocol.verifier import ack_payload
from tests.agent_support import AgentProcess, Pty
from tests.vision_scenes import background, standing

KEY = bytes(range(1, 33))
NODE, SITE = "node-h1", "bench-site"
TOPICS = Topics(SITE)
BANDS = [f"00000000{i:02x}" for i in (0xA1, 0xA2, 0xD1, 0xD2)]

SITE_TOML = f"""
[site]
id = "{SITE}"
[[rooms]]
id = "holding-1"
kind = "holding"
[[rooms]]
id = "corridor"
kind = "corridor"
[[doors]]
id = "d-h1"
between = ["holding-1", "corridor"]
[[nodes]]
id = "{NODE}"
room = "holding-1"
[[nodes.readers]]
id = "uhf-h1"
type = "uhf"
role = "presence"
port = "/dev/null"
[[nodes.readers]]
id = "desk-h1"
type = "rdm6300"
role = "tap"
port = "/dev/null"
[[nodes.doors]]
door = "d-h1"
type = "gpio"
pin = 17
[[nodes.cameras]]
id = "cam-h1"
source = "0"
"""


class AckerClient:
    """Verifies the node's events and acks them, as the supervisor would after its commit."""

    def __init__(self, broker: Mosquitto) -> None:
        self.n, self.ack_seq = 0, 0
        self.types: dict[str, int] = {}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-acker")
        self.c.on_connect = lambda c, *a: c.subscribe(TOPICS.node(NODE, "event"), 1)
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port, 10)
        self.c.loop_start()

    def _on_message(self, c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            ev = verify(bytes(msg.payload), {NODE: KEY}, topic_node=NODE)
        except VerifyError:
            return
        self.n += 1
        self.types[ev.type] = self.types.get(ev.type, 0) + 1
        self.ack_seq += 1
        c.publish(TOPICS.node(NODE, "ack"), ack_payload(
            KEY, NODE, self.ack_seq, int(time.time() * 1000), ev.epoch, [ev.seq]), qos=1)

    def close(self) -> None:
        """Disconnect."""
        self.c.loop_stop()
        self.c.disconnect()


def make_video(path: Path, seconds: float, fps: int = 15) -> None:
    """A 640x480 video of a person standing and swaying in a room."""
    bg = background()
    frames = standing(bg, 60)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    for i in range(int(seconds * fps)):
        out.write(frames[i % len(frames)])
    out.release()


def device_load(uhf: Pty, desk: Pty, door: Pty, stop: threading.Event) -> None:
    """UHF inventory of 4 bands every 200 ms, a desk tap every 5 s, a door toggle every 10 s."""
    t, i = 0.0, 0
    while not stop.is_set():
        for b in BANDS:
            uhf.write(uhf_m100.inventory_notice(uhf_m100.band_epc(b), rssi=-55))
        if i % 25 == 0:
            desk.write(rdm6300.encode(f"{0xB000000000 + i:010x}"))
        if i % 50 == 0:
            door.write(b"open\n" if (i // 50) % 2 == 0 else b"closed\n")
        i += 1
        t += 0.2
        stop.wait(0.2)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def run_mode(broker: Mosquitto, d: Path, vision: bool, video: Path, seconds: float,
             warmup: float) -> dict[str, Any]:
    """One agent run; returns CPU %, RSS figures and events seen."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "site.toml").write_text(SITE_TOML)
    (d / "node.key").write_text(KEY.hex())
    uhf, desk, door = Pty(), Pty(), Pty()
    (d / "agent.toml").write_text(f"""[agent]
node = "{NODE}"
site = "site.toml"
key_file = "node.key"
outbox = "outbox.db"
health_interval_s = 5
vision = {str(vision).lower()}
[mqtt]
host = "{broker.host}"
port = {broker.port}
[readers.uhf-h1]
port = "{uhf.name}"
[readers.desk-h1]
port = "{desk.name}"
[doors.d-h1]
source = "line:{door.name}"
[cameras.cam-h1]
source = "{video}"
""")
    acker = AckerClient(broker)
    agent = AgentProcess(d / "agent.toml").start()
    stop = threading.Event()
    load = threading.Thread(target=device_load, args=(uhf, desk, door, stop), daemon=True)
    load.start()
    try:
        assert agent.proc is not None
        pid = agent.proc.pid
        time.sleep(warmup)
        if agent.proc.poll() is not None:
            raise RuntimeError(f"agent exited: {agent.log_text()[-2000:]}")
        hz = os.sysconf("SC_CLK_TCK")
        t0, c0, rss = time.monotonic(), _cpu_ticks(pid), []
        events0 = acker.n
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            rss.append(status_kb(pid, "VmRSS"))
        cpu = (_cpu_ticks(pid) - c0) / hz / (time.monotonic() - t0) * 100
        return {"cpu": cpu, "rss_mean": sum(rss) / len(rss) / 1024, "rss_max": max(rss) / 1024,
                "hwm": status_kb(pid, "VmHWM") / 1024, "events": acker.n - events0,
                "types": dict(acker.types)}
    finally:
        stop.set()
        load.join(5)
        with contextlib.suppress(Exception):
            agent.terminate(15)
        agent.close()
        acker.close()
        for p in (uhf, desk, door):
            p.close()


def main() -> int:
    """Measure both modes and write the RESULTS.md section."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured window per mode")
    ap.add_argument("--warmup", type=float, default=15.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="custody-node-bench-") as tmp, \
            Mosquitto(BrokerConfig()) as broker:
        video = Path(tmp) / "room.avi"
        make_video(video, args.warmup + args.seconds + 20)
        results = {}
        for vision in (False, True):
            r = run_mode(broker, Path(tmp) / f"vision-{vision}", vision, video, args.seconds,
                         args.warmup)
            results[vision] = r
            print(f"vision={vision}: {r}", flush=True)
    off, on = results[False], results[True]
    rows = ["| mode | CPU % of one core | RSS mean MB | RSS max MB | peak RSS (VmHWM) MB | "
            "events/s acked |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in (("without vision", off), ("with vision (640x480, 15 fps)", on)):
        rows.append(f"| {name} | {r['cpu']:.1f} | {r['rss_mean']:.0f} | {r['rss_max']:.0f} | "
                    f"{r['hwm']:.0f} | {r['events'] / args.seconds:.1f} |")
    write_section("Room node CPU and memory", command_line(), (
        f"`custody agent` on this machine (x86, not a Pi: scale accordingly), measured over "
        f"{args.seconds:.0f} s after {args.warmup:.0f} s warm-up per mode. Device load: UHF "
        "inventory of 4 bands every 200 ms, a desk tap every 5 s, a door toggle every 10 s; "
        "with vision the camera is a 640x480 15 fps video of a person (motion-gated BlazePose "
        "and behaviour classifier).\n\n" + "\n".join(rows) + "\n\n"
        f"Event types acked with vision: {on['types']}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
