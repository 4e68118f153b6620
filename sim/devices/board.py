"""A virtual sensor board: the real MicroPython firmware (unix port) with its flash in a
directory, its input pins as files the simulator writes, and its RDM6300 on a pty.

The board gets the provisioned config.json format (custody/provisioning's board_config),
pointed at the simulator's plain-TCP loopback broker: no TLS, no login, no NTP.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custody.board_cmd import (
    board_argv,
    board_env,
    input_level,
    prepare_flash,
    resting_levels,
    write_pin,
)
from custody.provisioning.files import BOARD_UART, board_config
from protocol.site import Node, Site

from ..faults import Child

# Real seconds: the firmware debounces doors (50 ms) and polls pins (every 10 ms) in real time,
# whatever the custody clock's speed, so a sped-up run must still hold levels this long.
MIN_HOLD_S = 0.3


@dataclass(frozen=True)
class PinOf:
    """Where an input is wired on the board."""

    pin: int
    active_low: bool


def sim_board_config(site: Site, node: Node, key_hex: str, host: str, port: int
                     ) -> dict[str, Any]:
    """The board's config.json for the simulator's broker (plain TCP on loopback)."""
    cfg = board_config(site, node, key_hex, host, port, "", "sim", "")
    mqtt = cfg["mqtt"]
    for k in ("ca_der", "user", "password"):  # anonymous plain-TCP broker on loopback
        mqtt.pop(k, None)
    # Real-time knobs, short so that a cut or a restart heals within a few custody minutes.
    mqtt["backoff_max_s"] = 2
    cfg.update(ntp=False, health_interval_s=5, resend_s=3)
    return cfg


class VirtualBoard:
    """One sensor node as a restartable firmware process whose pins the simulator drives."""

    def __init__(self, node: Node, config: dict[str, Any], home: Path, env: dict[str, str],
                 uart_tty: str | None = None) -> None:
        self.id = node.id
        self.config = config
        self.flash = home / "flash"
        self.pins = home / "pins"
        self.pins.mkdir(parents=True, exist_ok=True)
        prepare_flash(self.flash, json.dumps(config, indent=1))
        self.door_pins = {str(d["door"]): PinOf(int(d["pin"]), bool(d.get("active_low", True)))
                          for d in config.get("doors", [])}
        self.button_pins = {str(b["id"]): PinOf(int(b["pin"]),
                                                bool(b.get("active_low", True)))
                            for b in config.get("buttons", [])}
        for pin, level in resting_levels(config).items():
            write_pin(self.pins, pin, level)
        uarts = {BOARD_UART: uart_tty} if uart_tty else {}
        self.child = Child(node.id, board_argv(), board_env(self.pins, uarts, base=env),
                           home.parent / f"{node.id}.log", cwd=self.flash)

    def set_door(self, door: str, state: str) -> None:
        """The door's contact: `open` or `closed` (KeyError if the board does not watch it)."""
        if state not in ("open", "closed"):
            raise ValueError(f"door state {state!r}")
        p = self.door_pins[door]
        write_pin(self.pins, p.pin, input_level(state == "closed", p.active_low))

    def set_button(self, button: str, pressed: bool) -> None:
        """Hold a button down or let it go (KeyError if not on this board)."""
        p = self.button_pins[button]
        write_pin(self.pins, p.pin, input_level(pressed, p.active_low))

    def level(self, pin: int) -> int:
        """The level the simulator drives on a pin now."""
        return int((self.pins / str(pin)).read_text().strip())

    def outbox(self) -> list[str]:
        """Event files still waiting in the board's flash."""
        d = self.flash / "outbox"
        return sorted(p.name for p in d.glob("*.ev")) if d.exists() else []
