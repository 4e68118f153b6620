"""Shared helpers for supervisor tests: a small test site, node keys, signed flows over MQTT."""

import dataclasses
import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from protocol.clock import Clock, simulated
from protocol.envelope import seal
from protocol.keys import dump_keys
from protocol.site import Site, parse_site
from protocol.staff import request_payload
from protocol.topics import Topics
from protocol.transport import LinkConf, make_client

SITE_TOML = """
[site]
id = "test-centre"

[rules]
registration_limit_s = 60
search_min_duration_s = 30
never_alone_grace_s = 10
never_alone_doorway_grace_s = 20
holding_watch_grace_s = 10
interview_grace_s = 20
recording_gap_s = 20
co_suspects_grace_s = 10
welfare_visit_min_s = 5
welfare_interval_level1_s = 120
welfare_interval_level2_s = 90
welfare_interval_high_s = 60
welfare_warn_before_s = 20
welfare_escalate_after_s = 20
time_limit_final_warn_s = 600
belongings_limit_s = 3600
device_offline_s = 10
alert_escalate_after_s = 3600

[[rules.custody_types]]
id = "short"
limit_h = 1
extended_h = [2]

[[rooms]]
id = "entry"
kind = "entry"
[[rooms]]
id = "search"
kind = "search"
[[rooms]]
id = "corridor"
kind = "corridor"
[[rooms]]
id = "medical"
kind = "medical"
[[rooms]]
id = "holding-1"
kind = "holding"
[[rooms]]
id = "interview-1"
kind = "interview"
[[rooms]]
id = "exit"
kind = "exit"

# Each node declares the devices it speaks for: ingest refuses anything else.
[[doors]]
id = "d1"
between = ["entry", "search"]
[[nodes]]
id = "node-entry"
room = "entry"
[[nodes.readers]]
id = "entry-uhf"
type = "uhf"
role = "presence"
port = "/dev/null"
[[nodes.cameras]]
id = "cam-entry"
source = "0"
[[nodes.doors]]
door = "d1"
type = "mqtt"
[[nodes]]
id = "node-search"
room = "search"
[[nodes.readers]]
id = "search-uhf"
type = "uhf"
role = "presence"
port = "/dev/null"
[[nodes.cameras]]
id = "cam-search"
source = "0"
[[nodes]]
id = "node-corridor"
room = "corridor"
[[nodes.readers]]
id = "corridor-uhf"
type = "uhf"
role = "presence"
port = "/dev/null"
[[nodes.cameras]]
id = "cam-corridor"
source = "0"
[[nodes]]
id = "node-medical"
room = "medical"
[[nodes.readers]]
id = "medical-uhf"
type = "uhf"
role = "presence"
port = "/dev/null"
[[nodes.cameras]]
id = "cam-medical"
source = "0"
[[nodes]]
id = "node-holding"
room = "holding-1"
[[nodes.readers]]
id = "holding-1-uhf"
type = "uhf"
role = "presence"
port = "/dev/null"
[[nodes.cameras]]
id = "cam-holding-1"
source = "0"
[[nodes.buttons]]
id = "b1"
kind = "call"
pin = 5
[[nodes.buttons]]
id = "p1"
kind = "panic"
pin = 6
[[nodes]]
id = "node-interview"
room = "interview-1"
[[nodes.readers]]
id = "interview-1-uhf"
type = "uhf"
role = "presence"
port = "/dev/null"
[[nodes.cameras]]
id = "cam-interview-1"
source = "0"
[[nodes]]
id = "node-exit"
room = "exit"
[[nodes.readers]]
id = "exit-uhf"
type = "uhf"
role = "presence"
port = "/dev/null"
[[nodes.cameras]]
id = "cam-exit"
source = "0"
"""

ROOM_NODE = {"entry": "node-entry", "search": "node-search", "corridor": "node-corridor",
             "medical": "node-medical", "holding-1": "node-holding",
             "interview-1": "node-interview", "exit": "node-exit"}
KEYS = {node: bytes([i + 1]) * 32 for i, node in enumerate(sorted(ROOM_NODE.values()))}
BANDS = {"o1": "00000000a1", "o2": "00000000a2", "o3": "00000000a3",
         "d1": "00000000d1", "d2": "00000000d2"}
SEX = {"o1": "m", "o2": "f", "o3": "m", "d1": "m", "d2": "m"}


# Staff accounts of the test site: o3 is also the duty supervisor (on no flow's team).
ACCOUNTS = {"o1": ("officer",), "o2": ("officer",), "o3": ("officer", "custody-supervisor"),
            "desk": ("officer",), "sup": ("custody-supervisor",), "insp": ("legal-officer",),
            "adm": ("admin",)}
ACCOUNT_PASSWORD = "test-password-1"


def account_records() -> dict[str, dict[str, Any]]:
    """The directory records of ACCOUNTS (one shared hash: scrypt is slow on purpose)."""
    from supervisor.accounts import hash_password, mosquitto_hash

    h, b = hash_password(ACCOUNT_PASSWORD), mosquitto_hash(ACCOUNT_PASSWORD)
    return {u: {"name": u.upper(), "sex": SEX.get(u, "f"), "roles": list(roles),
                "enabled": True, "hash": h, "broker_hash": b} for u, roles in ACCOUNTS.items()}


def make_directory() -> Any:
    """An in-memory supervisor.accounts.Directory of ACCOUNTS."""
    from supervisor.accounts import Directory

    return Directory.from_records(account_records(), fail_delay_s=0)


def write_accounts(path: Path) -> Path:
    """ACCOUNTS as a directory file (for `custody supervisor --accounts`)."""
    from supervisor.accounts import write_file

    write_file(path, {"version": 1, "accounts": account_records(), "history": []})
    return path


def make_site(**rule_overrides: Any) -> Site:
    """The small test site, with rule timings overridden."""
    import tomllib

    site = parse_site(tomllib.loads(SITE_TOML), "test-site.toml")
    if rule_overrides:
        site = dataclasses.replace(site, rules=dataclasses.replace(site.rules, **rule_overrides))
    return site


def write_files(tmp: Path) -> tuple[Path, Path]:
    """Write the site and keys files; return their paths."""
    site, keys = tmp / "site.toml", tmp / "keys.toml"
    site.write_text(SITE_TOML)
    keys.write_text(dump_keys(KEYS))
    return site, keys


class Driver:
    """Plays one flow against a supervisor: signed node events, staff commands, alert capture."""

    def __init__(self, host: str, port: int, site: Site, clock: Clock) -> None:
        self.site, self.clock = site, clock
        self.topics = Topics(site.id, site.topic_prefix)
        self.seq: dict[str, int] = {}
        self.epoch = 1
        self.alerts: list[dict[str, Any]] = []
        self.responses: queue.Queue[dict[str, Any]] = queue.Queue()
        self.acks: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.client = make_client(f"test-driver-{id(self)}", LinkConf(host, port))
        self.client.on_message = self._on_message
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect(host, port, 5)
        self.client.loop_start()
        self.client.subscribe([(self.topics.alert_filter(), 1),
                               (f"{self.topics.base}/response/+/+", 1),
                               (f"{self.topics.base}/node/+/ack", 1)])
        assert ready.wait(5)

    def _on_message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        data = json.loads(msg.payload)
        parsed = self.topics.parse(msg.topic)
        with self.lock:
            if parsed.kind == "alert":
                self.alerts.append({**data, "topic": msg.topic})
            elif parsed.kind == "response":
                self.responses.put(data)
            elif parsed.channel == "ack":
                self.acks.append(json.loads(data["env"]))

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()

    # ---- sending --------------------------------------------------------------------------

    def event(self, node: str, etype: str, body: dict[str, Any], *, seq: int | None = None,
              key: bytes | None = None) -> bytes:
        """Seal and publish one event from `node` (next sequence unless given)."""
        if seq is None:
            seq = self.seq.get(node, 0) + 1
            self.seq[node] = seq
        payload = seal(key or KEYS[node], node, self.epoch, seq, self.clock.now_ms(), etype,
                       body)
        self.client.publish(self.topics.node(node, "event"), payload, qos=1).wait_for_publish(5)
        return payload

    def enter(self, who: str, room: str) -> None:
        """presence.enter of a person's band in a room."""
        self.event(ROOM_NODE[room], "presence.enter",
                   {"band": BANDS[who], "room": room, "reader": f"{room}-uhf"})

    def leave(self, who: str, room: str) -> None:
        """presence.leave of a person's band."""
        self.event(ROOM_NODE[room], "presence.leave",
                   {"band": BANDS[who], "room": room, "reader": f"{room}-uhf"})

    def camera(self, room: str, live: bool = True, recording: bool = True) -> None:
        """A camera heartbeat."""
        self.event(ROOM_NODE[room], "camera", {"camera": f"cam-{room}", "room": room,
                                               "live": live, "recording": recording})

    def staff(self, command: str, args: dict[str, Any], user: str = "o1",
              expect_ok: bool = True, timeout: float = 10.0) -> dict[str, Any]:
        """Send a staff request and wait for its response."""
        txn = f"t{time.monotonic_ns()}"
        self.client.publish(self.topics.request(user, command), request_payload(txn, None, args),
                            qos=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.responses.get(timeout=max(0.01, deadline - time.monotonic()))
            if r["txn"] == txn:
                assert r["ok"] == expect_ok, r
                return r
        raise AssertionError(f"no response to {command}")

    def wait(self, custody_s: float) -> None:
        """Let custody time pass."""
        self.clock.sleep(custody_s)

    def raised(self) -> list[tuple[str, str | None, str | None]]:
        """(rule, detainee, room) of every alert raised so far."""
        with self.lock:
            return sorted((a["rule"], a["detainee"], a["room"]) for a in self.alerts
                          if a["state"] == "raised")

    def wait_for(self, rule: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until an alert of `rule` is raised; return its message."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for a in self.alerts:
                    if a["rule"] == rule and a["state"] == "raised":
                        return a
            time.sleep(0.02)
        raise AssertionError(f"no {rule} alert within {timeout} s; got {self.raised()}")


def sped_up(speed: float = 20.0) -> Clock:
    """A clock running `speed` times faster than real time from now."""
    return simulated(speed, time.time())


class Heartbeats:
    """Camera heartbeats for some rooms every recording_gap_s / 3 custody seconds."""

    def __init__(self, driver: Driver, rooms: list[str], live: bool = True,
                 recording: bool = True) -> None:
        self.driver, self.rooms, self.live, self.recording = driver, rooms, live, recording
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        period = self.driver.clock.real_seconds(self.driver.site.rules.recording_gap_s / 3)
        while not self.stop.is_set():
            for room in self.rooms:
                self.driver.camera(room, self.live, self.recording)
            self.stop.wait(period)

    def close(self) -> None:
        """Stop sending."""
        self.stop.set()
        self.thread.join(5)


class InProcess:
    """A Supervisor object running in a thread of the test process."""

    def __init__(self, site: Site, tmp: Path, host: str, port: int, clock: Clock) -> None:
        from supervisor.service import Supervisor

        self.db, self.cp = tmp / "journal.db", tmp / "checkpoint.json"
        self.sup = Supervisor(site, KEYS, self.db, self.cp, LinkConf(host, port), clock,
                              accounts=make_directory())
        self.thread = threading.Thread(target=self.sup.run, daemon=True)
        self.thread.start()
        assert self.sup.connected.wait(10), "supervisor did not connect"
        # Its subscriptions must be in place before the test publishes anything.
        assert self.sup.subscribed.wait(10), "the broker did not acknowledge the subscriptions"

    def stop(self) -> None:
        """Stop cleanly."""
        self.sup.stop_event.set()
        self.thread.join(10)
