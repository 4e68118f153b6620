"""`custody board`: run the real sensor-node firmware in the MicroPython unix port.

For the simulator and for trying a board without hardware: a directory plays the board's
flash (boot.py, main.py, lib/ and the provisioned config.json are copied in), input pins are
files in a directory (write "0"/"1"), the RDM6300 reads a tty (e.g. a pty), and the firmware
talks MQTT to the broker named in config.json.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"


def micropython() -> str:
    """The MicroPython unix port binary (installed by setup.sh's dev extras)."""
    beside = Path(sys.executable).with_name("micropython")
    found = str(beside) if beside.exists() else shutil.which("micropython")
    if found is None:
        raise FileNotFoundError("micropython (unix port) is not installed: run ./setup.sh")
    return found


def prepare_flash(flash: Path, config_json: str, extra_files: list[Path] | None = None) -> None:
    """Copy the firmware and a config.json into `flash`, as flashing a board would."""
    flash.mkdir(parents=True, exist_ok=True)
    for name in ("boot.py", "main.py"):
        shutil.copy(FIRMWARE / name, flash / name)
    shutil.copytree(FIRMWARE / "lib", flash / "lib", dirs_exist_ok=True)
    (flash / "config.json").write_text(config_json)
    for f in extra_files or []:
        shutil.copy(f, flash / f.name)


def board_env(pins: Path, uarts: dict[int, str], wdt_file: Path | None = None,
              base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the unix port: test_support shims first, then the board's own paths."""
    env = dict(os.environ if base is None else base)
    env["MICROPYPATH"] = f"{FIRMWARE / 'test_support'}:.:.frozen:lib"
    env["CUSTODY_FW_PINS"] = str(pins)
    for uart_id, tty in uarts.items():
        env[f"CUSTODY_FW_UART_{uart_id}"] = tty
    if wdt_file is not None:
        env["CUSTODY_FW_WDT"] = str(wdt_file)
    return env


def input_level(active: bool, active_low: bool = True) -> int:
    """The pin level of an input: a closed contact or a pressed button pulls to its active
    level (low for the usual pull-up wiring)."""
    return (0 if active_low else 1) if active else (1 if active_low else 0)


def resting_levels(config: dict[str, Any]) -> dict[int, int]:
    """Pin levels of a board at rest, from its config.json: doors closed, buttons released."""
    levels = {int(d["pin"]): input_level(True, bool(d.get("active_low", True)))
              for d in config.get("doors", [])}
    levels.update({int(b["pin"]): input_level(False, bool(b.get("active_low", True)))
                   for b in config.get("buttons", [])})
    return levels


def write_pin(pins: Path, pin: int, value: int) -> None:
    """Drive an input pin as the wiring would (atomic: the firmware never reads half a file)."""
    tmp = pins / f"{pin}.tmp"
    tmp.write_text(str(value))
    tmp.replace(pins / str(pin))


def board_argv() -> list[str]:
    """Command line that resets the board: boot.py, then main.py."""
    return [micropython(), "-c", "import boot\nimport main"]


def _run(args: argparse.Namespace) -> int:
    flash = Path(args.flash)
    config = Path(args.config)
    extra = [config.parent / "ca.der"] if (config.parent / "ca.der").exists() else []
    prepare_flash(flash, config.read_text(), extra)
    pins = Path(args.pins) if args.pins else flash.with_name(flash.name + "-pins")
    pins.mkdir(parents=True, exist_ok=True)
    uarts = {1: args.uart1} if args.uart1 else {}
    env = board_env(pins, uarts)
    argv = board_argv()
    os.chdir(flash)
    os.execve(argv[0], argv, env)
    return 0  # not reached


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `custody board`."""
    p = sub.add_parser("board", help="run the sensor-node firmware in MicroPython (no hardware)")
    p.add_argument("--config", required=True, help="the board's config.json (ca.der beside it)")
    p.add_argument("--flash", required=True, help="directory playing the board's flash")
    p.add_argument("--pins", help="directory of pin files (default: FLASH-pins)")
    p.add_argument("--uart1", help="tty the RDM6300 on UART 1 is read from")
    p.set_defaults(func=_run)
