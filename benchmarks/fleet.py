"""A fleet of simulated room nodes for load: a site file with N rooms, their keys, and a
publisher that sends correctly sealed, sequenced events for all of them at a set rate.

Used by the soak and the latency benchmark as background traffic. Each node has its own
key, epoch and sequence, exactly as a room agent would send them; the event mix is what a
quiet, staffed room produces (camera heartbeats, person counts, doors), so background load
does not itself raise alerts.
"""

import collections
import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

from protocol.envelope import seal
from protocol.keys import dump_keys
from protocol.topics import Topics
from supervisor.process import incident_id


def node_id(i: int) -> str:
    """Id of simulated node i."""
    return f"node-r{i:03d}"


def room_id(i: int) -> str:
    """Id of simulated room i."""
    return f"room-r{i:03d}"


def fleet_site(site: str, rooms: int, extra: str = "", broker_port: int = 1883,
               db: str = "supervisor.db", keys_file: str = "keys.toml") -> str:
    """Site TOML with `rooms` interview rooms (each with a node and a camera) off one corridor,
    plus whatever `extra` TOML adds (more rooms, nodes, rules)."""
    parts = [f'[site]\nid = "{site}"\n',
             f'[broker]\nhost = "127.0.0.1"\nport = {broker_port}\n',
             f'[supervisor]\ndb = "{db}"\ncheckpoint_file = "checkpoint.json"\n'
             f'checkpoint_interval_s = 60\nkeys_file = "{keys_file}"\n',
             '[[rooms]]\nid = "corridor"\nkind = "corridor"\n']
    for i in range(rooms):
        parts.append(f'[[rooms]]\nid = "{room_id(i)}"\nkind = "interview"\n')
        parts.append(f'[[doors]]\nid = "d-{room_id(i)}"\nbetween = ["{room_id(i)}", "corridor"]\n')
        parts.append(f'[[nodes]]\nid = "{node_id(i)}"\nroom = "{room_id(i)}"\n'
                     f'[[nodes.cameras]]\nid = "cam-{i:03d}"\nsource = "0"\n'
                     f'[[nodes.doors]]\ndoor = "d-{room_id(i)}"\ntype = "gpio"\npin = 17\n')
    return "\n".join(parts) + "\n" + extra


def fleet_keys(rooms: int, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """A deterministic key per simulated node (plus `extra`)."""
    keys = {node_id(i): bytes([i % 251 + 1]) * 32 for i in range(rooms)}
    return {**keys, **(extra or {})}


def write_fleet(d: Path, site: str, rooms: int, extra_toml: str = "",
                extra_keys: dict[str, bytes] | None = None, broker_port: int = 1883) -> Path:
    """Write site.toml and keys.toml into `d`; return the site path."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "keys.toml").write_text(dump_keys(fleet_keys(rooms, extra_keys)))
    p = d / "site.toml"
    p.write_text(fleet_site(site, rooms, extra_toml, broker_port))
    return p


def routine_body(kind: str, r: int) -> dict[str, object]:
    """The body of room r's routine event of `kind` (camera, person_count, door)."""
    room = room_id(r)
    if kind == "camera":
        return {"camera": f"cam-{r:03d}", "room": room, "live": True, "recording": True,
                "fps_x10": 150}
    if kind == "person_count":
        return {"camera": f"cam-{r:03d}", "room": room, "count": 0}
    return {"door": f"d-{room}", "state": "closed"}


@dataclass
class Fleet:
    """Publishes sealed events for `rooms` nodes at `rate` events/s in total (QoS 1)."""

    host: str
    port: int
    site: str
    rooms: int
    rate: float
    clients: int = 4
    fall_every_s: float = 0.0  # > 0: every so often a room's camera reports a fall instead
    sent: int = 0
    falls: dict[str, float] = field(default_factory=dict)  # alert id -> perf_counter sent
    epoch: int = field(default_factory=lambda: int(time.time()))
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        topics = Topics(self.site)
        keys = fleet_keys(self.rooms)
        conns = []
        for k in range(self.clients):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fleet-{k}-{self.epoch}")
            c.max_inflight_messages_set(200)
            c.connect(self.host, self.port, 30)
            c.loop_start()
            conns.append(c)
        seqs = [0] * self.rooms
        kinds = itertools.cycle(["camera", "camera", "person_count", "door"])
        start = time.monotonic()
        i, next_fall, fall_n = 0, start + self.fall_every_s, 0
        ends: collections.deque[tuple[float, int, str]] = collections.deque()
        try:
            while not self._stop.is_set():
                # Pace to the target rate, in small batches.
                due = int((time.monotonic() - start) * self.rate)
                if i >= due:
                    time.sleep(0.002)
                    continue
                r = i % self.rooms
                body: dict[str, object]
                ts, fall = int(time.time() * 1000), ""
                if ends and ends[0][0] <= time.monotonic():  # a fall's incident ends (1 s on)
                    _, r, fid = ends.popleft()
                    kind = "behaviour"
                    body = {"id": fid, "phase": "end", "camera": f"cam-{r:03d}",
                            "room": room_id(r), "cls": "fall", "score_pct": 90}
                elif self.fall_every_s > 0 and time.monotonic() >= next_fall:
                    next_fall += self.fall_every_s
                    fall_n += 1
                    kind = "behaviour"
                    body = {"id": f"f{fall_n}", "phase": "new", "camera": f"cam-{r:03d}",
                            "room": room_id(r), "cls": "fall", "score_pct": 90}
                    fall = incident_id("fall", f"{node_id(r)}/f{fall_n}", ts)
                    ends.append((time.monotonic() + 1.0, r, f"f{fall_n}"))
                else:
                    kind = next(kinds)
                    body = routine_body(kind, r)
                seqs[r] += 1
                node = node_id(r)
                payload = seal(keys[node], node, self.epoch, seqs[r], ts, kind, body)
                if fall:
                    self.falls[fall] = time.perf_counter()
                conns[r % self.clients].publish(topics.node(node, "event"), payload, qos=1)
                i += 1
                self.sent = i
        finally:
            for c in conns:
                c.loop_stop()
                c.disconnect()

    def start(self) -> "Fleet":
        """Start publishing in a background thread."""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop; return the number of events sent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        return self.sent
