"""A pyserial reader thread: feeds a frame parser, reopens a vanished port with back-off."""

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import serial

from . import Read
from .rdm6300 import Rdm6300Parser
from .uhf_m100 import M100Parser, multi_poll_command

log = logging.getLogger(__name__)

BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 10.0
REINVENTORY_S = 300.0
# A UHF module in multiple polling answers every poll, with a "no tag" frame when the field is
# empty, many times a second. One that has done so and then sends nothing is not an empty
# room but a dead reader (a module reset out of polling, a broken TX line) while its port
# still opens: presence in that room is no longer known. Half-way the poll command goes out
# again (a reset module resumes); at SILENT_S it is a fault until frames come back.
SILENT_S = 5.0


class Parser(Protocol):
    """What a driver's parser offers the reader thread."""

    counts: Counter[str]

    def feed(self, data: bytes) -> list[Read]:
        """Consume bytes; return completed reads."""
        ...


def make_parser(reader_type: str) -> Parser:
    """The frame parser for a site file reader `type`."""
    if reader_type == "rdm6300":
        return Rdm6300Parser()
    if reader_type == "uhf":
        return M100Parser()
    raise ValueError(f"no driver for reader type {reader_type!r}")


# on_reads(reader_id, reads); on_port(reader_id, ok, detail): ok False when the port is lost;
# on_silent(reader_id, ok, detail): ok False when a reader that answers empty polls goes silent.
ReadsCallback = Callable[[str, list[Read]], None]
PortCallback = Callable[[str, bool, str], None]


class SerialReader:
    """Reads one serial reader in its own thread; never raises out of it."""

    def __init__(self, reader_id: str, reader_type: str, port: str, baud: int,
                 on_reads: ReadsCallback, on_port: PortCallback,
                 start_inventory: bool = True, on_silent: PortCallback | None = None,
                 silent_s: float = SILENT_S) -> None:
        self.id, self.type, self.port, self.baud = reader_id, reader_type, port, baud
        self.parser = make_parser(reader_type)
        self.on_reads, self.on_port, self.on_silent = on_reads, on_port, on_silent
        self.silent_s = silent_s
        self.silent = False  # a fault is open: it answered empty polls, then fell silent
        self.init_command = multi_poll_command() if reader_type == "uhf" and start_inventory \
            else None
        self.reopens = 0
        self.is_open = False
        self._ser: serial.Serial | None = None  # while open (for caught_up)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader-{reader_id}",
                                        daemon=True)

    def start(self) -> None:
        """Start the reader thread."""
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to stop and wait for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def caught_up(self) -> bool:
        """Nothing waits unread in the port (a simulated run's held clock waits for this
        reader: a read handled late is stamped late, and past the presence TTL a band would
        flap out and in); a closed port has nothing to wait for. Only a wait lasting the
        clock's whole lease stops custody time (see protocol/heldclock.py)."""
        ser = self._ser
        if ser is None:
            return True
        try:
            return int(ser.in_waiting) == 0
        except (serial.SerialException, OSError, ValueError):  # closed meanwhile
            return True

    def stats(self) -> dict[str, int]:
        """Counters for health."""
        c = self.parser.counts
        return {"frames": c["frames"], "checksum": c["checksum"], "noise": c["noise"],
                "errors": c["errors"], "bad_epc": c["bad_epc"], "reopens": self.reopens,
                "open": int(self.is_open), "silent": int(self.silent)}

    def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        lost = False
        ever_open = False
        while not self._stop.is_set():
            try:
                ser = serial.Serial(self.port, self.baud, timeout=0.2, write_timeout=0.2)
            except (serial.SerialException, OSError, ValueError) as e:
                if not lost:
                    lost = True
                    self._port_event(False, f"cannot open {self.port}: {e}")
                self._stop.wait(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            if ever_open:
                self.reopens += 1
            ever_open = True
            if lost:
                lost = False
                self._port_event(True, f"{self.port} open again")
            backoff = BACKOFF_MIN_S
            self.is_open = True
            self._ser = ser
            try:
                self._read(ser)
            except (serial.SerialException, OSError) as e:
                lost = True
                self._port_event(False, f"{self.port} failed: {e}")
            except Exception:  # a bug must not silently kill the reader: log, back off, retry
                log.exception("reader %s: unexpected error", self.id)
                lost = True
                self._port_event(False, f"{self.port}: internal error")
            finally:
                self.is_open = False
                self._ser = None
                try:
                    ser.close()
                except Exception:  # closing a vanished device can fail in odd ways
                    log.debug("reader %s: close failed", self.id, exc_info=True)
            if not self._stop.is_set():
                self._stop.wait(backoff * random.uniform(0.5, 1.5))

    def _read(self, ser: serial.Serial) -> None:
        next_init = 0.0
        heard = time.monotonic()  # last bytes (or the port opening)
        asked_again = False
        while not self._stop.is_set():
            if self.init_command is not None and time.monotonic() >= next_init:
                next_init = time.monotonic() + REINVENTORY_S
                try:
                    ser.write(self.init_command)
                except serial.SerialTimeoutException:
                    log.debug("reader %s: inventory command not accepted", self.id)
            data = ser.read(max(1, ser.in_waiting))
            now = time.monotonic()
            if data:
                heard, asked_again = now, False
                if self.silent:
                    self.silent = False
                    self._silent_event(True, f"{self.port}: frames again")
                reads = self.parser.feed(data)
                if reads:
                    self.on_reads(self.id, reads)
            elif self.parser.counts["no_tag"] and not self.silent:
                quiet = now - heard
                if quiet >= self.silent_s / 2 and not asked_again:
                    asked_again, next_init = True, now  # a reset module polls again
                if quiet >= self.silent_s:
                    self.silent = True
                    self._silent_event(False, f"{self.port}: no frames for {quiet:.0f} s after "
                                              "answering empty polls (reader silent)")

    def _silent_event(self, ok: bool, detail: str) -> None:
        self._tell(self.on_silent, ok, detail)

    def _port_event(self, ok: bool, detail: str) -> None:
        self._tell(self.on_port, ok, detail)

    def _tell(self, callback: PortCallback | None, ok: bool, detail: str) -> None:
        (log.info if ok else log.warning)("reader %s: %s", self.id, detail)
        if callback is not None:
            callback(self.id, ok, detail)
