"""Test parts for the room agent: a small site, ptys, the agent as a process, an observer
that verifies what the agent publishes, and an acker that acts as the supervisor will."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from protocol.envelope import VerifyError, seal, verify
from protocol.events import Event
from protocol.topics import Topics
from protocol.transport import LinkConf, make_client
from protocol.verifier import ack_payload

ROOT = Path(__file__).resolve().parent.parent
KEY = bytes(range(32))
NODE = "node-a"
SITE_ID = "test-site"
TOPICS = Topics(SITE_ID)
OFFICER, DETAINEE, STRANGER = "00000000a1", "00000000d1", "00000000ee"


def write_site(d: Path, room_kind: str = "information", rules: str = "") -> Path:
    """A one-node site: room-a with a UHF presence reader, a desk tap reader, paired door
    readers on door d-a (room-a / corridor) and a door contact."""
    text = f"""
[site]
id = "{SITE_ID}"

[rules]
presence_ttl_s = 2
{rules}

[[rooms]]
id = "room-a"
kind = "{room_kind}"

[[rooms]]
id = "corridor"
kind = "corridor"

[[doors]]
id = "d-a"
between = ["room-a", "corridor"]

[[nodes]]
id = "{NODE}"
room = "room-a"

[[nodes.readers]]
id = "uhf-a"
type = "uhf"
role = "presence"
port = "/dev/null-uhf"

[[nodes.readers]]
id = "desk-a"
type = "rdm6300"
role = "tap"
port = "/dev/null-desk"

[[nodes.readers]]
id = "door-in"
type = "rdm6300"
role = "door"
door = "d-a"
side = "room-a"
port = "/dev/null-door-in"

[[nodes.readers]]
id = "door-out"
type = "rdm6300"
role = "door"
door = "d-a"
side = "corridor"
port = "/dev/null-door-out"

[[nodes.doors]]
door = "d-a"
type = "gpio"
pin = 17
"""
    p = d / "site.toml"
    p.write_text(text)
    return p


class Pty:
    """A pty pair: the test writes device bytes on the master, the agent opens the slave."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.name = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        """Write bytes as the device would."""
        os.write(self.master, data)

    def close(self) -> None:
        """Close both ends."""
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class Rig:
    """Ptys for every device of write_site's node."""

    uhf: Pty = field(default_factory=Pty)
    desk: Pty = field(default_factory=Pty)
    door_in: Pty = field(default_factory=Pty)
    door_out: Pty = field(default_factory=Pty)
    contact: Pty = field(default_factory=Pty)

    def close(self) -> None:
        """Close all ptys."""
        for p in (self.uhf, self.desk, self.door_in, self.door_out, self.contact):
            p.close()


def write_config(d: Path, broker: Any, rig: Rig, site: Path, **agent: Any) -> Path:
    """An agent config for write_site's node, wired to the rig's ptys."""
    (d / "node.key").write_text(KEY.hex() + "\n")
    opts = {"health_interval_s": 0.5, "retransmit_s": 2, "vision": False, **agent}
    lines = ["[agent]", f'node = "{NODE}"', f'site = "{site}"', 'key_file = "node.key"',
             'outbox = "var/outbox.db"']
    for k, v in opts.items():
        lines.append(f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}")
    lines += ["[mqtt]", f'host = "{broker.host}"', f"port = {broker.port}", "keepalive_s = 2",
              '[readers.uhf-a]', f'port = "{rig.uhf.name}"',
              '[readers.desk-a]', f'port = "{rig.desk.name}"',
              '[readers.door-in]', f'port = "{rig.door_in.name}"',
              '[readers.door-out]', f'port = "{rig.door_out.name}"',
              '[doors.d-a]', f'source = "line:{rig.contact.name}"']
    p = d / "agent.toml"
    p.write_text("\n".join(lines).replace("'", '"') + "\n")
    return p


class AgentProcess:
    """`custody agent --config FILE` as a child process."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = {**os.environ, **(env or {})}
        self.log = config.parent / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "AgentProcess":
        """Start the agent."""
        with self.log.open("ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "custody", "agent", "--config", str(self.config)],
                cwd=ROOT, env=self.env, stdout=logf, stderr=subprocess.STDOUT)
        return self

    def kill9(self) -> None:
        """kill -9."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 10) -> int:
        """SIGTERM and wait; return the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        """Make sure the child is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_text(self) -> str:
        """The agent's log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Observer:
    """Subscribes to the node's topics, verifies events and health, keeps them in order."""

    def __init__(self, broker: Any, client_id: str = "observer",
                 conf: LinkConf | None = None) -> None:
        self.events: list[Event] = []
        self.health: list[dict[str, Any]] = []
        self.availability: list[str] = []
        self.bad: list[str] = []
        self.lock = threading.Lock()
        conf = conf or LinkConf(broker.host, broker.port)
        self.client = make_client(client_id, conf, clean_start=False)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async(conf.host, conf.port, 5)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *a: Any) -> None:
        client.subscribe([(TOPICS.node(NODE, "event"), 1), (TOPICS.node(NODE, "health"), 1),
                          (TOPICS.node(NODE, "availability"), 1)])

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if msg.topic.endswith("/availability"):
                with self.lock:
                    self.availability.append(msg.payload.decode())
                return
            ev = verify(bytes(msg.payload), {NODE: KEY}, topic_node=NODE)
            with self.lock:
                if ev.type == "health":
                    self.health.append(ev.body)
                else:
                    self.events.append(ev)
        except (VerifyError, UnicodeDecodeError) as e:
            with self.lock:
                self.bad.append(str(e))

    def of_type(self, *types: str) -> list[Event]:
        """Events seen so far of these types, in arrival order (duplicates included)."""
        with self.lock:
            return [e for e in self.events if e.type in types]

    def unique(self, *types: str) -> list[Event]:
        """Like of_type, but each (epoch, seq) once (retransmissions dropped)."""
        seen: set[tuple[int, int]] = set()
        out = []
        for e in self.of_type(*types):
            if (e.epoch, e.seq) not in seen:
                seen.add((e.epoch, e.seq))
                out.append(e)
        return out

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()


class Acker:
    """Acts like the supervisor's ingest: verify, dedupe by (node, epoch, seq), ack."""

    def __init__(self, broker: Any, client_id: str = "acker",
                 conf: LinkConf | None = None, announce: bool = False) -> None:
        self.announce = announce
        self.first: list[tuple[int, int]] = []  # (epoch, seq) in first-arrival order
        self.seen: set[tuple[int, int]] = set()
        self.duplicates = 0
        self.ack_seq = 0
        self.lock = threading.Lock()
        conf = conf or LinkConf(broker.host, broker.port)
        self.client = make_client(client_id, conf)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async(conf.host, conf.port, 5)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *a: Any) -> None:
        client.subscribe(TOPICS.node(NODE, "event"), 1)
        if self.announce:  # as the supervisor does: its retained availability
            client.publish(TOPICS.supervisor("availability"), b"online", qos=1, retain=True)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        ev = verify(bytes(msg.payload), {NODE: KEY}, topic_node=NODE)
        with self.lock:
            key = (ev.epoch, ev.seq)
            if key in self.seen:
                self.duplicates += 1
            else:
                self.seen.add(key)
                self.first.append(key)
            self.ack_seq += 1
            payload = ack_payload(KEY, NODE, self.ack_seq, int(time.time() * 1000), ev.epoch,
                                  [ev.seq])
        client.publish(TOPICS.node(NODE, "ack"), payload, qos=1)

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()


def publish_roster(broker: Any, bands: dict[str, dict[str, str]], version: int = 1) -> None:
    """Publish a signed retained roster, as the supervisor does."""
    payload = seal(KEY, NODE, 1, version, int(time.time() * 1000), "roster",
                   {"version": version, "bands": bands})
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="roster-pub")
    c.connect(broker.host, broker.port, 5)
    c.loop_start()
    c.publish(TOPICS.node(NODE, "roster"), payload, qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def wait_for(pred: Callable[[], Any], timeout: float, what: str, log: Callable[[], str] = str
             ) -> Any:
    """Poll until pred() is truthy; fail naming `what` (and showing the agent log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n--- agent log ---\n{log()[-3000:]}")


def wait_up(obs: Observer, agent: AgentProcess, timeout: float = 15) -> None:
    """Wait for health from this very agent process with every reader port open."""
    def up() -> bool:
        if not obs.health or agent.proc is None:
            return False
        h = obs.health[-1]["obj"]
        return bool(h["pid"] == agent.proc.pid and all(r["open"] for r in h["readers"].values()))

    wait_for(up, timeout, "the agent up with its readers open", agent.log_text)


def band(i: int) -> str:
    """The i-th test band id."""
    return f"{0xB0000000 + i:010x}"


def read_bands(rig: Rig, ids: range) -> None:
    """One UHF inventory notice per band (each becomes presence.enter, then leave)."""
    from edge_agent.drivers import uhf_m100

    for i in ids:
        rig.uhf.write(uhf_m100.inventory_notice(uhf_m100.band_epc(band(i))))


def assert_in_order_without_gaps(acker: Acker) -> list[int]:
    """Every event reached the acker once after dedupe, first arrivals in sequence order."""
    with acker.lock:
        first = list(acker.first)
    epochs = {e for e, _ in first}
    assert len(epochs) == 1, epochs
    seqs = [s for _, s in first]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    return seqs


def run_outage(broker: Any, tmp: Path, outage_s: float, n_before: int = 20,
               n_during: int = 20) -> dict[str, Any]:
    """Broker stopped for `outage_s` while events happen, then restarted: nothing lost."""
    rig = Rig()
    cfg = write_config(tmp, broker, rig, write_site(tmp))
    obs = Observer(broker)
    acker = Acker(broker)
    agent = AgentProcess(cfg).start()
    try:
        wait_up(obs, agent)
        read_bands(rig, range(n_before))
        wait_for(lambda: len(acker.first) >= 2 * n_before, 20, "events before the outage",
                 agent.log_text)
        broker.stop()
        t0 = time.monotonic()
        read_bands(rig, range(n_before, n_before + n_during))  # committed, not publishable
        time.sleep(max(0.0, outage_s - (time.monotonic() - t0)))
        broker.start()
        restarted = time.monotonic()
        total = 2 * (n_before + n_during)
        wait_for(lambda: len(acker.first) >= total, 60, "every event after the restart",
                 agent.log_text)
        caught_up_s = time.monotonic() - restarted
        wait_for(lambda: obs.health and obs.health[-1]["queue"] == 0
                 and obs.availability[-1] == "online"
                 and "offline" in obs.availability[obs.availability.index("online"):],
                 30, "empty outbox and availability offline then online", agent.log_text)
        seqs = assert_in_order_without_gaps(acker)
        enters = {e.body["band"] for e in obs.unique("presence.enter")}
        assert enters == {band(i) for i in range(n_before + n_during)}
        availability = list(obs.availability)
        assert agent.terminate() == 0
        return {"events": len(seqs), "duplicates": acker.duplicates,
                "caught_up_s": caught_up_s, "availability": availability}
    finally:
        agent.close()
        acker.close()
        obs.close()
        rig.close()
