"""Run a scenario: broker, supervisor, one agent per room node and one firmware process per
sensor board, devices on ptys and pin files, steps on the simulated clock, alerts collected
from alert/#, and the score.

All children share one sped-up clock (protocol.clock, CUSTODY_CLOCK_* in their environment),
so the site's rule timings stay exactly as written while a day takes minutes.
"""

import contextlib
import itertools
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from custody.broker import BrokerConfig, Mosquitto, start_broker
from protocol.clock import Clock
from protocol.heldclock import ClockHolder
from protocol.keys import dump_keys
from protocol.passwords import hash_password, mosquitto_hash, write_file
from protocol.site import Node
from protocol.staff import request_payload
from protocol.topics import Topics
from protocol.transport import LinkConf, make_client

from .actors import OUTSIDE, Floor
from .devices.board import MIN_HOLD_S, VirtualBoard, sim_board_config
from .devices.camera import LIE_DOWN_MS, VirtualCamera
from .devices.door import VirtualDoor
from .devices.frames import Noise
from .devices.readers import VirtualReader
from .devices.video import Clip, VideoCamera, load_clip
from .faults import Child, Relay, env_with
from .priority import raise_priority, restore_priority
from .scenario import Scenario
from .score import Raised, Score, score
from .timetable import DUTY_SUPERVISOR, Step

log = logging.getLogger(__name__)

# The custody clock runs at most this far (custody seconds) past the last sign of life of the
# slowest process, and at least LEASE_MIN_S real seconds (renewals every quarter of that).
LEASE_CUSTODY_S = 2.0
LEASE_MIN_S = 0.02
# A UHF reader's inventory period in custody seconds. Stays and absences are measured from
# reads, so each is known to about two periods; the boundary pairs' 2 s margins need it
# well under 1 s (at 1.25 s, an officer out for 8 s measured 10.3 s and crossed the 10 s
# grace). A real reader inventories several times a second.
UHF_POLL_S = 0.5
UNTIL_SLACK_MS = 5  # custody time stands this far past a step's time until it is done
SETTLE_S = 1.0  # real seconds after every agent is up, for rosters to arrive
BURST_MS = 150  # custody ms between keypoint frames while fast motion is shown
# Custody seconds of dense frames from the start: a fall, a fight, and lying down (which, seen
# in frames seconds apart, is a stand-to-flat jump, i.e. a fall), plus a window after each.
BURST_S = {"fall": 3.0, "fight": 8.0, "lying": LIE_DOWN_MS / 1000 + 3.0}
BURST_MAX = 40  # dense frames written at once at most (6 s: a loaded pump loop still keeps up)
# A staff request nobody answered (published while the supervisor was restarting or not yet
# subscribed after a broker restart: the broker drops it) is sent again with its txn, which
# the supervisor answers from its record if it did get it. Meanwhile custody time waits, as
# an officer waits for the desk to confirm before walking on, for at most STAFF_WAIT_S.
STAFF_RESEND_S = 1.0  # real seconds
STAFF_WAIT_S = 5.0  # real seconds
STAFF_GIVE_UP_S = 60.0  # real seconds; then the scorecard lists it as unanswered


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def dump_toml(data: dict[str, Any]) -> str:
    """Write the subset of TOML site and agent files use (tables, arrays of tables)."""
    out: list[str] = []

    def table(prefix: str, d: dict[str, Any]) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict) and not (
            isinstance(v, list) and v and isinstance(v[0], dict))}
        if prefix:
            out.append(f"\n[{prefix}]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)
        for k, v in d.items():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    name = f"{prefix}.{k}" if prefix else k
                    sub_scalars = {a: b for a, b in item.items()
                                   if not isinstance(b, dict) and not (
                                       isinstance(b, list) and b and isinstance(b[0], dict))}
                    out.append(f"\n[[{name}]]")
                    out.extend(f"{a} = {_toml_value(b)}" for a, b in sub_scalars.items())
                    for a, b in item.items():
                        if isinstance(b, list) and b and isinstance(b[0], dict):
                            for sub in b:
                                out.append(f"\n[[{name}.{a}]]")
                                out.extend(f"{x} = {_toml_value(y)}" for x, y in sub.items())
                        elif isinstance(b, dict):
                            out.append(f"\n[{name}.{a}]")
                            out.extend(f"{x} = {_toml_value(y)}" for x, y in b.items())

    table("", data)
    return "\n".join(out).lstrip("\n") + "\n"


def supervisor_argv(site_file: Path, accounts: Path, desk_port: int | None = None
                    ) -> list[str]:
    """How the supervisor is started (its CLI entry point); with the desk when given a port."""
    desk = ["--desk-port", str(desk_port)] if desk_port is not None else []
    return [sys.executable, "-m", "custody", "supervisor", "--config", str(site_file),
            "--accounts", str(accounts), *desk, "-v"]


def write_accounts(path: Path, officers: dict[str, str], desk_password: str | None = None
                   ) -> None:
    """The simulated centre's staff directory: each officer (id -> sex) an `officer`
    account, and the duty supervisor who gives approvals and is on no detainee's team.
    `desk_password`: the duty supervisor's, for signing in to the demo's desk."""
    password = os.urandom(16).hex()  # nobody logs in: the sim's staff act over MQTT topics
    h, b = hash_password(password), mosquitto_hash(password)
    people = {o: (sex, ["officer"]) for o, sex in officers.items()}
    people[DUTY_SUPERVISOR] = ("f", ["custody-supervisor"])
    hashes = {u: h for u in people}
    if desk_password is not None:
        hashes[DUTY_SUPERVISOR] = hash_password(desk_password)
    write_file(path, {"version": 1, "history": [], "accounts": {
        u: {"name": u, "sex": sex, "roles": roles, "enabled": True, "hash": hashes[u],
            "broker_hash": b} for u, (sex, roles) in sorted(people.items())}})


@dataclass
class Unanswered:
    """A staff request sent and not yet answered."""

    what: str  # "at <t> s <command> by <user>"
    topic: str
    payload: bytes
    custody_ms: int  # when it was sent, in custody time
    first: float  # monotonic
    last: float  # monotonic, last sent
    tries: int = 1

    def error(self) -> str:
        """What the scorecard says of it."""
        return f"{self.what}: no answer after {self.tries} tries"


@dataclass
class RunOptions:
    """Knobs of a run."""

    workdir: Path | None = None
    keep: bool = False
    vision: bool = True
    noise: Noise = field(default_factory=Noise)
    on_event: Callable[[str, Any], None] | None = None  # live view hook: ("alert", Raised) ...
    broker: Mosquitto | None = None  # an already running broker (the demo's)
    supervisor: bool = True  # False: nodes and devices only (to test the devices and nodes)
    desk_port: int | None = None  # the supervisor serves its desk there (custody demo)
    desk_password: str | None = None  # the duty supervisor's desk password


class Run:
    """One scenario run with all its processes and devices."""

    def __init__(self, sc: Scenario, opts: RunOptions | None = None) -> None:
        self.sc = sc
        self.opts = opts or RunOptions()
        self.dir = Path(self.opts.workdir or tempfile.mkdtemp(prefix=f"custody-sim-{sc.name}-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.floor = Floor()
        # Custody time stands still while any process of the run (this one, the supervisor, a
        # node) is held up, so a busy machine slows the run instead of making gaps in what the
        # devices saw (protocol/heldclock.py). It starts at the scenario's `start` (e.g.
        # before midnight), else now.
        self.holder = ClockHolder(self.dir / "clock", sc.speed, sc.start_epoch or time.time(),
                                  max(LEASE_MIN_S, LEASE_CUSTODY_S / sc.speed),
                                  alive=self.dir / "alive")
        self.clock: Clock = self.holder.clock()
        self.start_ms = 0
        self.broker: Mosquitto | None = self.opts.broker
        self.own_broker = self.opts.broker is None
        self.relay: Relay | None = None
        self.use_relay = False
        self.supervisor: Child | None = None
        self.agents: dict[str, Child] = {}
        self.boards: dict[str, VirtualBoard] = {}
        self.board_of_door: dict[str, VirtualBoard] = {}
        self.board_of_button: dict[str, VirtualBoard] = {}
        self.releases: list[tuple[str, float]] = []  # button, when (real)
        self.readers: dict[str, VirtualReader] = {}
        self.uhf_of_room: dict[str, list[VirtualReader]] = {}
        self.doors: dict[str, VirtualDoor] = {}
        self.cameras: dict[str, VirtualCamera] = {}
        self.camera_room: dict[str, str] = {}
        self.videos: dict[str, VideoCamera] = {}  # cameras fed real frames ([video] rooms)
        self._clip: Clip | None = None
        self.taps: list[tuple[VirtualReader, str, float]] = []  # reader, band, until (real)
        self.door_close: list[tuple[str, float]] = []  # door, when (real)
        self.door_held: dict[str, int] = {}  # door held open (a door step) until custody ms
        self.raised: dict[str, Raised] = {}
        self.alert_log: list[dict[str, Any]] = []
        self.responses: dict[str, dict[str, Any]] = {}
        self.healthy: set[str] = set()  # nodes whose agent has published health (it is up)
        self.command_errors: list[str] = []
        self.sent: dict[str, str] = {}  # txn -> "at <t> s <command> by <user>"
        self.unanswered: dict[str, Unanswered] = {}  # txn -> request, until its response
        # Staff reactions ([[staff]]) waiting for their alert, then for their time.
        self.reactions = list(sc.plan.reactions)
        self.due: list[tuple[int, str, Any]] = []  # custody ms, alert id, Reaction
        self.client: mqtt.Client | None = None
        self.topics = Topics(sc.centre.site.id, sc.centre.site.topic_prefix)
        self._stop = threading.Event()
        self._pumps: list[threading.Thread] = []
        self._txn = itertools.count(1)
        self._lock = threading.Lock()
        self.report_path: Path | None = None
        self._nice: int | None = None  # the nice value to give back at stop()
        self._holding: threading.Thread | None = None
        self._passes: dict[str, float] = {}  # device pump -> end of its last pass (real)
        self._next_due_ms: int | None = None  # custody ms of the next scenario step (run_steps)
        self._stepping = False  # run_steps is on: the steps and staff reactions pace the clock

    # -- set-up --------------------------------------------------------------------------
    def _emit(self, kind: str, data: Any) -> None:
        if self.opts.on_event is not None:
            with contextlib.suppress(Exception):
                self.opts.on_event(kind, data)

    def setup(self) -> None:
        """Broker, files, devices, supervisor and agents (custody time not yet running)."""
        if self.broker is None:
            # The broker's own temp dir: Mosquitto (run as root) drops to its user, which must
            # be able to reach the directory.
            self.broker = start_broker(BrokerConfig())
        # Nodes go through a relay only when the scenario cuts or lags one (it costs a hop).
        self.use_relay = any(s.action == "fault"
                             and s.args.get("kind") in ("cut-node", "lag-node")
                             for s in self.sc.plan.steps)
        self.relay = Relay(self.broker.host, self.broker.port, self.clock.now)
        site = self.sc.centre.site
        keys = {n.id: os.urandom(32) for n in site.nodes}
        self.keys = keys
        (self.dir / "keys.toml").write_text(dump_keys(keys))
        data = json.loads(json.dumps(self.sc.site_data))
        data["broker"] = {**data.get("broker", {}), "host": self.broker.host,
                          "port": self.broker.port}
        data["supervisor"] = {**data.get("supervisor", {}),
                              "db": str(self.dir / "supervisor.db"),
                              "checkpoint_file": str(self.dir / "checkpoint.json"),
                              "keys_file": str(self.dir / "keys.toml")}
        site_file = self.dir / "site.toml"
        site_file.write_text(dump_toml(data))
        self.site_file = site_file
        seed = self.sc.seed
        for node in self.sc.centre.room_nodes():
            conf: dict[str, Any] = {
                "agent": {"node": node.id, "site": str(site_file), "key": keys[node.id].hex(),
                          "outbox": str(self.dir / node.id / "outbox.db"),
                          "health_interval_s": 5, "vision": self.opts.vision,
                          # A quarter of the gap, not half: the transport's slack before a
                          # heartbeat counts as missing shrinks with the speed (README).
                          "camera_heartbeat_s": self.sc.centre.site.rules.recording_gap_s / 4},
                "mqtt": {"host": self.broker.host,
                         "port": self.relay.add(node.id) if self.use_relay else self.broker.port},
            }
            readers: dict[str, Any] = {}
            for r in node.readers:
                seed += 1
                vr = VirtualReader(r.id, r.type, self.opts.noise, seed)
                self.readers[r.id] = vr
                (self.dir / "tty").mkdir(exist_ok=True)
                readers[r.id] = {"port": vr.link(str(self.dir / "tty" / r.id))}
                if r.role == "presence":
                    self.uhf_of_room.setdefault(node.room, []).append(vr)
            doors: dict[str, Any] = {}
            for d in node.doors:
                if d.type == "gpio":
                    vd = VirtualDoor(d.door)
                    self.doors[d.door] = vd
                    doors[d.door] = {"source": f"line:{vd.path}"}
            cams: dict[str, Any] = {}
            for c in node.cameras:
                seed += 1
                if self.sc.video is not None and node.room in self.sc.video.rooms:
                    # Real pixels: the node opens the pipe as an OpenCV camera.
                    vv = self._video_camera(c.id, node.room)
                    cams[c.id] = {"source": vv.path}
                    continue
                vc = VirtualCamera(c.id, seed)
                self.cameras[c.id] = vc
                self.camera_room[c.id] = node.room
                cams[c.id] = {"source": f"kp:{vc.path}"}
            if readers:
                conf["readers"] = readers
            if doors:
                conf["doors"] = doors
            if cams and self.opts.vision:
                conf["cameras"] = cams
            path = self.dir / f"{node.id}.toml"
            (self.dir / node.id).mkdir(exist_ok=True)
            path.write_text(dump_toml(conf))
            self.agents[node.id] = Child(node.id, [sys.executable, "-m", "custody", "agent",
                                                   "--config", str(path)],
                                         env_with(self.clock.env()), self.dir / f"{node.id}.log")
        for node in self.sc.centre.sensor_nodes():
            self._setup_board(node, keys[node.id])
        if self.use_relay:
            self.relay.start()
        accounts = self.dir / "accounts.json"
        write_accounts(accounts, {o.id: o.sex for o in self.sc.centre.officers.values()},
                       self.opts.desk_password)
        self.supervisor = Child("supervisor", supervisor_argv(site_file, accounts,
                                                              self.opts.desk_port),
                                env_with(self.clock.env()), self.dir / "supervisor.log")

    def _video_camera(self, camera_id: str, room: str) -> VideoCamera:
        assert self.sc.video is not None
        if self._clip is None:
            self._clip = load_clip(self.sc.video.fall_clip)

        def view() -> str:
            shown = self.floor.behaviour_of(room)
            if shown and shown[0] == "fall":
                return "fall"
            return "person" if self.floor.occupied().get(room) else "empty"

        vv = VideoCamera(camera_id, self.dir, self._clip, self.sc.speed, view)
        self.videos[camera_id] = vv
        self.camera_room[camera_id] = room
        return vv

    def _setup_board(self, node: Node, key: bytes) -> None:
        """One sensor board: config.json, flash, pins and its RDM6300 pty if it has one."""
        assert self.broker is not None and self.relay is not None
        port = self.relay.add(node.id) if self.use_relay else self.broker.port
        cfg = sim_board_config(self.sc.centre.site, node, key.hex(), self.broker.host, port)
        tty = None
        taps = [r for r in node.readers if r.type == "rdm6300"]
        if taps:
            vr = VirtualReader(taps[0].id, "rdm6300", self.opts.noise, self.sc.seed)
            self.readers[vr.id] = vr
            tty = vr.path
        vb = VirtualBoard(node, cfg, self.dir / node.id, env_with(self.clock.env()), tty)
        self.boards[node.id] = vb
        for door in vb.door_pins:
            self.board_of_door[door] = vb
        for button in vb.button_pins:
            self.board_of_button[button] = vb

    def node_child(self, node: str) -> Child:
        """The process of a room node (agent) or a sensor node (board)."""
        if node in self.agents:
            return self.agents[node]
        return self.boards[node].child

    def _connect(self) -> None:
        assert self.broker is not None
        # A persistent session: alerts published while the broker restarts still reach us.
        c = make_client(f"sim-{os.getpid()}-{id(self) % 10000}",
                        LinkConf(self.broker.host, self.broker.port), clean_start=False)
        base = self.topics.base
        c.on_message = self._on_message
        c.on_connect = lambda cl, *_: cl.subscribe([(f"{base}/alert/#", 1),
                                                    (f"{base}/response/#", 1),
                                                    (f"{base}/node/+/health", 0)])
        c.connect(self.broker.host, self.broker.port, keepalive=5)
        c.loop_start()
        self.client = c

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        if parts[-1] == "health" and len(parts) >= 2:
            with self._lock:
                self.healthy.add(parts[-2])
            return
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        if "response" in parts:
            with self._lock:
                self.responses[str(data.get("txn"))] = data
                if self.unanswered.pop(str(data.get("txn")), None) is None:
                    return  # an answer to a repeat: said once already
            if not data.get("ok"):
                what = self.sent.get(str(data.get("txn")), parts[-1])
                self.command_errors.append(f"{what}: {data.get('error')}")
                self._emit("command_error", f"{what}: {data.get('error')}")
            return
        if "alert" in parts and isinstance(data, dict) and "id" in data:
            with self._lock:
                self.alert_log.append(data)
                new = data["id"] not in self.raised
                if new:
                    r = Raised(str(data["id"]), str(data.get("rule")),
                               str(data.get("severity", parts[-2])), data.get("detainee"),
                               data.get("room"), int(data.get("raised_ts") or data.get("ts")
                                                     or 0), time.time(),
                               str(data.get("message", "")))
                    self.raised[r.id] = r
                    self._react(r)
            self._emit("alert", data)

    def _react(self, r: Raised) -> None:
        """Schedule the first waiting staff reaction that names this alert (lock held)."""
        for x in self.reactions:
            if x.rule == r.rule and (x.detainee is None or x.detainee == r.detainee) and (
                    x.room is None or x.room == r.room):
                self.reactions.remove(x)
                self.due.append((r.raised_ts + int(x.after_s * 1000), r.id, x))
                return

    # -- running -------------------------------------------------------------------------
    def start(self) -> None:
        """Start every process and the device pump; custody time starts now."""
        # Ahead of other jobs, with everything started from here (sim/priority.py).
        self._nice = raise_priority()
        self._holding = threading.Thread(target=self._hold_clock, name="sim-clock", daemon=True)
        self._holding.start()
        self.setup()
        assert self.supervisor is not None
        self._connect()
        if self.opts.supervisor:
            self.supervisor.start()
            time.sleep(1.0)
        for v in self.videos.values():
            v.start()
        for a in self.agents.values():
            a.start()
        for b in self.boards.values():
            b.child.start()
        self._pumps = [threading.Thread(target=self._pump, args=(True, False),
                                        name="sim-readers", daemon=True)]
        if self.opts.vision and self.cameras:
            self._pumps.append(threading.Thread(target=self._pump, args=(False, True),
                                                name="sim-cameras", daemon=True))
        for th in self._pumps:
            th.start()
        self.wait_ready()
        # Custody time t=0 is now: the clock keeps running from the run's creation, steps are
        # timed from this moment.
        self.start_ms = self.clock.now_ms()
        if self.opts.supervisor and not self.supervisor.running:
            raise RuntimeError("supervisor exited at start:\n" + self.supervisor.tail())

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until every agent is up (its first health message) and then SETTLE_S more:
        agents that start together on a small machine take seconds to import and open."""
        deadline = time.monotonic() + timeout
        want = set(self.agents) | set(self.boards)
        while time.monotonic() < deadline:
            with self._lock:
                missing = want - self.healthy
            if not missing:
                break
            for name in missing:
                a = self.node_child(name)
                if not a.running:
                    raise RuntimeError(f"node {name} exited at start:\n{a.tail()}")
            time.sleep(0.1)
        else:
            raise RuntimeError(f"nodes not up after {timeout:.0f} s: {sorted(missing)}")
        time.sleep(SETTLE_S)

    def t(self) -> float:
        """Custody seconds since the start."""
        return (self.clock.now_ms() - self.start_ms) / 1000.0

    def run_steps(self, progress: Callable[[float], None] | None = None) -> None:
        """Do every step at its time, then wait out the tail."""
        self._stepping = True
        try:
            self._run_steps(progress)
        finally:
            self._stepping = False

    def _run_steps(self, progress: Callable[[float], None] | None) -> None:
        steps = self.sc.plan.sorted_steps()
        i = 0
        end = self.sc.duration_s
        while not self._stop.is_set():
            now = self.t()
            while i < len(steps) and steps[i].at_s <= now:
                self.do(steps[i])
                i += 1
            self._staff_due()
            self._ask_again()
            self._next_due_ms = (self.start_ms + round(steps[i].at_s * 1000)
                                 if i < len(steps) else None)
            if progress is not None:
                progress(min(now, end))
            if now >= end and i >= len(steps):
                break
            nxt = steps[i].at_s if i < len(steps) else end
            with self._lock:
                if self.due:  # a staff reaction falls due first
                    nxt = min(nxt, (min(d[0] for d in self.due) - self.start_ms) / 1000)
            time.sleep(max(0.0, min(0.1, self.clock.real_seconds(nxt - now))))

    def do(self, step: Step) -> None:
        """Carry out one step."""
        a = step.args
        self._emit("step", step)
        if step.action == "move":
            self._move(list(a["people"]), str(a["room"]))
        elif step.action == "command":
            self.command(str(a["command"]), str(a["user"]), dict(a["args"]))
        elif step.action == "tap":
            band = self.sc.centre.band_of(self.floor.wears(str(a["person"])))
            with self._lock:
                self.taps.append((self.readers[str(a["reader"])], band, time.time() + 0.3))
        elif step.action == "behaviour":
            self.floor.set_behaviour(str(a["room"]), str(a["kind"]), self.t())
        elif step.action == "band":
            person = str(a["person"])
            if "unread_s" in a:  # missed reads: nothing reads the band for a while
                self.floor.miss_reads(person, step.at_s + float(a["unread_s"]))
            elif "echo_room" in a:  # seen by two readers: a neighbour's reader reads it too
                self.floor.echo_in(person, str(a["echo_room"]),
                                   step.at_s + float(a.get("duration_s", 0)))
            elif "swap_with" in a:  # two people exchange their (opened) bands
                self.floor.swap_bands(person, str(a["swap_with"]))
            else:
                self.floor.set_flags(person, bool(a.get("tamper")), bool(a.get("battery_low")))
        elif step.action == "camera":
            cam_id = str(a["camera"])
            if "view" in a:  # blurred or moved (keypoint cameras: the tamper path's measures)
                self.cameras[cam_id].view = str(a["view"])
            else:
                (self.videos.get(cam_id) or self.cameras[cam_id]).covered = bool(a["covered"])
        elif step.action == "door":  # held open (propped, or left open) for open_s
            door = str(a["door"])
            self._set_door(door, "open")
            with self._lock:
                # Until then in custody time (the clock stands still while a process is held
                # up): a door left open 90 s is open 90 custody s however busy the machine.
                self.door_close = [(d, w) for d, w in self.door_close if d != door]
                self.door_held[door] = self.clock.now_ms() + int(float(a["open_s"]) * 1000)
        elif step.action == "reader":  # a cable pulled / plugged in again
            vr = self.readers[str(a["reader"])]
            if a.get("plugged", True):
                vr.plug()
            else:
                vr.unplug()
        elif step.action == "noise":
            n = Noise(float(a.get("junk_rate", 0)), float(a.get("corrupt_rate", 0)),
                      float(a.get("split_rate", 0)))
            targets = [str(a["reader"])] if "reader" in a else list(self.readers)
            for r in targets:
                self.readers[r].noise = n
        elif step.action == "button":
            self.press(str(a["button"]))
        elif step.action == "fault":
            self.fault(str(a["kind"]), str(a.get("target", "")), float(a.get("duration_s", 0)),
                       float(a.get("delay_s", 0)))

    def _staff_due(self) -> None:
        """Carry out the staff reactions whose time has come, through the staff path."""
        now = self.clock.now_ms()
        with self._lock:
            ready = [d for d in self.due if d[0] <= now]
            self.due = [d for d in self.due if d[0] > now]
        for _, alert_id, x in ready:
            args = {"alert": alert_id}
            if x.do == "ack-alert":
                args["action"] = x.note
            elif x.note:
                args["note"] = x.note
            self._emit("staff", f"{x.do} {alert_id} by {x.by}")
            self.command(x.do, x.by, args)

    def _move(self, people: list[str], room: str) -> None:
        before = self.floor.move(people, room)
        for prev in set(before.values()):
            if prev == OUTSIDE or room == OUTSIDE:
                continue
            door = self.sc.centre.door_between(prev, room)
            if door is None:
                continue
            hold = self.clock.real_seconds(3)
            if door in self.board_of_door:
                hold = max(hold, MIN_HOLD_S)  # the firmware debounces in real time
            elif door not in self.doors:
                continue
            self._set_door(door, "open")
            with self._lock:
                self.door_close.append((door, time.time() + hold))

    def _set_door(self, door: str, state: str) -> None:
        """Drive a door's contact, wherever it is wired (room node line or board pin)."""
        if door in self.doors:
            self.doors[door].set(state)
        if door in self.board_of_door:
            self.board_of_door[door].set_door(door, state)

    def press(self, button: str) -> None:
        """Press a board's button; the pump lets it go MIN_HOLD_S real seconds later."""
        self.board_of_button[button].set_button(button, True)
        with self._lock:
            self.releases.append((button, time.time() + MIN_HOLD_S))

    def command(self, command: str, user: str, args: dict[str, Any]) -> str:
        """Send a staff command (times given relative to now are made absolute)."""
        now = self.clock.now_ms()
        out: dict[str, Any] = {}
        for k, v in args.items():
            if k.endswith("_s_ago"):
                out[k[: -len("_s_ago")] + "_ts"] = now - int(float(v) * 1000)
            elif k.endswith("_ts_in_s"):  # a time field given from now: due_ts_in_s
                out[k[: -len("_in_s")]] = now + int(float(v) * 1000)
            elif k.endswith("_in_s"):
                out[k[: -len("_in_s")] + "_by_ts"] = now + int(float(v) * 1000)
            else:
                out[k] = v
        txn = f"sim-{next(self._txn)}"
        topic, payload = self.topics.request(user, command), request_payload(txn, None, out)
        mono = time.monotonic()
        with self._lock:
            self.sent[txn] = what = f"at {self.t():.0f} s {command} by {user}"
            if self.opts.supervisor:  # without one (devices only) nobody answers
                self.unanswered[txn] = Unanswered(what, topic, payload, now, mono, mono)
        assert self.client is not None
        self.client.publish(topic, payload, qos=1)
        return txn

    def _ask_again(self) -> None:
        """Send again the staff requests still unanswered after STAFF_RESEND_S; give up on
        those unanswered for STAFF_GIVE_UP_S (listed in the scorecard)."""
        mono = time.monotonic()
        with self._lock:
            again = [u for u in self.unanswered.values() if mono - u.last >= STAFF_RESEND_S]
            lost = [t for t, u in self.unanswered.items() if mono - u.first >= STAFF_GIVE_UP_S]
            for txn in lost:
                u = self.unanswered.pop(txn)
                self.command_errors.append(u.error())
        for u in again:
            if u.tries >= 2:
                log.warning("%s: no answer, sent again (%d)", u.what, u.tries)
            u.tries, u.last = u.tries + 1, mono
            assert self.client is not None
            self.client.publish(u.topic, u.payload, qos=1)

    def fault(self, kind: str, target: str, duration_s: float, delay_s: float = 0.0) -> None:
        """Inject a fault (`duration_s` custody seconds; a lag's `delay_s` real seconds)."""
        self._emit("fault", f"{kind} {target}".strip())
        if kind == "kill-broker" and self.broker is not None:
            self.broker.kill()
        elif kind == "start-broker" and self.broker is not None:
            self.broker.start()
        elif kind == "kill-node":
            self.node_child(target).kill()
        elif kind == "start-node":
            self.node_child(target).start()
        elif kind == "cut-node" and self.relay is not None:
            self.relay.cut(target, duration_s)
        elif kind == "lag-node" and self.relay is not None:
            self.relay.lag(target, delay_s, duration_s)
        elif kind == "kill-supervisor" and self.supervisor is not None:
            self.supervisor.kill()
        elif kind == "start-supervisor" and self.supervisor is not None:
            self.supervisor.start()

    def held_by(self, counts: dict[int, int] | None = None) -> dict[str, int]:
        """Which process stopped custody time how often (or `counts` of the holder), by
        name."""
        names = {-1: "simulator"}
        for name, child in [*self.agents.items(), ("supervisor", self.supervisor)]:
            if child is not None and child.proc is not None:
                names[child.proc.pid] = name
        got = self.holder.held_by if counts is None else counts
        return {names.get(pid, f"pid {pid}"): n for pid, n in got.items()}

    def _hold_clock(self) -> None:
        """Renew the custody clock's lease while the run goes on (see __init__)."""
        every = self.holder.lease_s / 4
        while not self._stop.is_set():
            # The device pumps' last completed passes: a pump starved of the GIL or the CPU
            # holds time like a node that is behind.
            self.holder.renew(min(self._passes.values(), default=None), self._until())
            time.sleep(every)

    def _until(self) -> float | None:
        """The custody time (Unix s) of the next step or staff reaction still to do, or of a
        staff request still unanswered (for STAFF_WAIT_S): time stands there until the main
        thread has done it, so a late thread never stretches a scenario's durations (an
        officer back 2 custody s late at x20 turned 8 s alone into 10.3)."""
        if not self._stepping:
            return None
        nxt = self._next_due_ms
        mono = time.monotonic()
        with self._lock:
            due = min((d[0] for d in self.due), default=None)
            waits = [u.custody_ms for u in self.unanswered.values()
                     if mono - u.first < STAFF_WAIT_S]
        if waits:  # an officer waiting for the desk to confirm
            due = min(waits) if due is None else min(due, *waits)
        if due is not None:
            nxt = due if nxt is None else min(nxt, due)
        # a few ms past it, so that a clock read rounded down still finds the step due
        return None if nxt is None else (nxt + UNTIL_SLACK_MS) / 1000.0

    def _pump(self, readers: bool, cameras: bool) -> None:
        """Write what every device sees, at real-hardware rates scaled to the clock (one
        thread for readers and doors, one for cameras, so a slow camera line never delays
        a reader poll)."""
        rules = self.sc.centre.site.rules
        speed = self.sc.speed
        uhf_period = max(0.01, min(0.25, UHF_POLL_S / speed))
        cam_period = max(0.02, min(0.5, rules.recording_gap_s / 2 / speed / 3))
        next_uhf = next_cam = 0.0
        # Devices run on custody time: while it stands still (protocol/heldclock.py) a reader
        # polls and a camera shoots no more, or a node already behind would get ever more.
        uhf_step_ms, cam_step_ms = uhf_period * speed * 500, cam_period * speed * 500
        uhf_c = cam_c = 0
        cam_last: dict[str, float] = {}
        watched = {r.id for r in self.sc.centre.site.rooms if r.camera_required}
        while not self._stop.is_set():
            now = time.time()
            if readers and now >= next_uhf and self.clock.now_ms() - uhf_c >= uhf_step_ms:
                next_uhf = now + uhf_period
                uhf_c = self.clock.now_ms()
                occ = self.floor.read_by_room(self.t())
                for room, room_readers in self.uhf_of_room.items():
                    people = occ.get(room, [])
                    for vr in room_readers:
                        for p in people:
                            f = self.floor.flags_of(p)
                            vr.read_band(self.sc.centre.band_of(self.floor.wears(p)),
                                         tamper=f.tamper, battery_low=f.battery_low)
                        if vr.enabled:
                            vr.port.flush()
                with self._lock:
                    self.taps = [(r, b, u) for r, b, u in self.taps if u > now]
                    taps = list(self.taps)
                    closing = [d for d, w in self.door_close if w <= now
                               and d not in self.door_held]
                    self.door_close = [(d, w) for d, w in self.door_close if w > now]
                    t_ms = self.clock.now_ms()
                    closing += [d for d, w in self.door_held.items() if w <= t_ms]
                    self.door_held = {d: w for d, w in self.door_held.items() if w > t_ms}
                    released = [b for b, w in self.releases if w <= now]
                    self.releases = [(b, w) for b, w in self.releases if w > now]
                for r, b, _ in taps:
                    r.read_band(b)
                for d in closing:
                    self._set_door(d, "closed")
                for b in released:
                    self.board_of_button[b].set_button(b, False)
            if cameras and now >= next_cam and self.clock.now_ms() - cam_c >= cam_step_ms:
                next_cam = now + cam_period
                ts = cam_c = self.clock.now_ms()
                occ = self.floor.occupied()
                for cam_id, cam in self.cameras.items():
                    room = self.camera_room[cam_id]
                    people = occ.get(room, [])
                    shown = self.floor.behaviour_of(room)
                    kind = shown[0] if shown else ""
                    # The camera of an empty room the rules do not watch sends a line twice a
                    # (real) second, enough to stay live; the others run at the full rate
                    # their heartbeats need, so nothing changes when someone walks in.
                    if (not people and room not in watched
                            and now - cam_last.get(cam_id, 0.0) < 0.5):
                        continue
                    cam_last[cam_id] = now
                    # The person who falls or lies still: the room's detainee if any.
                    dets = [p for p in people if p in self.sc.centre.detainees] or people
                    subject = dets[0] if dets else None
                    # Fast motion needs frames close together in custody time: for the first
                    # seconds of a fall or a fight, catch up in BURST_MS steps.
                    stamps = [ts]
                    if (shown and kind in BURST_S and cam.last_ts
                            and ts - self.start_ms - shown[1] * 1000 < BURST_S[kind] * 1000):
                        stamps = list(range(cam.last_ts + BURST_MS, ts + 1, BURST_MS))[-BURST_MAX:]
                    for stamp in stamps:
                        cam.frame(stamp, people, falling=subject if kind == "fall" else None,
                                  lying=subject if kind == "lying" else None,
                                  fighting=kind == "fight")
            # A pass counts (and holds custody time) only once every line it wrote is in the
            # kernel: a node that reads an empty pty looks caught up while the rest waits here.
            ports = ([vr.port for rr in self.uhf_of_room.values() for vr in rr] if readers
                     else [c.port for c in self.cameras.values()])
            if all(p.delivered() for p in ports if not p.closed):
                self._passes["readers" if readers else "cameras"] = time.time()
            time.sleep((uhf_period if readers else cam_period) / 2)

    # -- ending --------------------------------------------------------------------------
    def score(self) -> Score:
        """Score what was raised against what was expected."""
        with self._lock:
            raised = list(self.raised.values())
            history = list(self.alert_log)
            refused = list(self.command_errors) + [
                u.error() for u in self.unanswered.values()
                if time.monotonic() - u.first >= STAFF_RESEND_S]
            unused = [f"{x.do} by {x.by} on {x.rule} {x.detainee or x.room}"
                      for x in [*self.reactions, *(d[2] for d in self.due)]]
        s = score(self.sc.name, self.sc.plan.expected, raised, self.start_ms,
                  history=history, refused=refused, unused=unused)
        s.clock_stops, s.clock_stopped_s = self.holder.stops, self.holder.stopped_s
        s.clock_held_by = self.held_by()
        s.clock_gave_up = self.held_by(self.holder.gave_up)
        return s

    def stop(self) -> None:
        """Stop everything: the supervisor first (so nodes going away at the end raise no
        device-offline), then the agents, the relay, the devices and the broker."""
        self._stop.set()
        for th in self._pumps:
            th.join(2)
        if self._holding is not None:
            self._holding.join(2)
        self.holder.close()  # time runs freely again for whatever is still stopping
        if self.holder.stops or self.holder.gave_up:
            log.info("custody time stood still %d times, %.1f real s in all (held by %s); "
                     "stopped waiting for a hung process %d times", self.holder.stops,
                     self.holder.stopped_s, self.held_by(), sum(self.holder.gave_up.values()))
        if self.supervisor is not None:
            self.supervisor.stop(10)
        nodes = [*self.agents.values(), *(b.child for b in self.boards.values())]
        for a in nodes:
            if a.proc is not None and a.proc.poll() is None:
                a.proc.terminate()
        for a in nodes:
            a.stop(10)
        if self.client is not None:
            self.client.loop_stop()
            with contextlib.suppress(Exception):
                self.client.disconnect()
        if self.relay is not None and self.use_relay:
            self.relay.stop()
        for r in self.readers.values():
            r.close()
        for d in self.doors.values():
            d.close()
        for c in self.cameras.values():
            c.close()
        for v in self.videos.values():
            v.close()
        if self.own_broker and self.broker is not None:
            self.broker.close()
        restore_priority(self._nice)
        self._nice = None
        if not self.opts.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def run_scenario(sc: Scenario, opts: RunOptions | None = None,
                 progress: Callable[[float], None] | None = None) -> Score:
    """Run a scenario start to finish and score it (everything stopped afterwards)."""
    run = Run(sc, opts)
    try:
        run.start()
        run.run_steps(progress)
        # Alerts raised at the very end still have to reach us.
        time.sleep(1.0)
        return run.score()
    finally:
        run.stop()
