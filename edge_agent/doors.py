"""Door contacts behind one interface: a Pi GPIO pin, or a line source the simulator drives.

`gpio:<pin>` uses gpiozero (imported only when such a door exists, i.e. on a Pi).
`line:<path>` reads text lines "open" / "closed" from a pty slave or a FIFO.
Both are debounced: a state is reported once it has held `debounce_s` and differs from the
last reported one.
"""

import contextlib
import logging
import os
import select
import termios
import threading
import time
import tty
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

STATES = ("open", "closed")
POLL_S = 0.01
DoorCallback = Callable[[str, str], None]  # (door id, "open" | "closed")


class Debouncer:
    """Reports a state once it has been stable for `hold_s` and differs from the last report."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.reported: str | None = None
        self.pending: str | None = None
        self.since = 0.0

    def observe(self, state: str, now: float) -> None:
        """Record the raw state seen at `now`."""
        if state != self.pending:
            self.pending, self.since = state, now

    def poll(self, now: float) -> str | None:
        """The newly stable state, if there is one to report."""
        if self.pending is not None and self.pending != self.reported and \
                now - self.since >= self.hold_s:
            self.reported = self.pending
            return self.pending
        return None


class DoorInput(Protocol):
    """One door contact."""

    door: str

    def start(self, on_change: DoorCallback) -> None:
        """Begin reporting changes."""
        ...

    def stop(self) -> None:
        """Stop reporting and release the input."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters for health."""
        ...


class _Threaded:
    """Common thread plumbing for door inputs."""

    def __init__(self, door: str, debounce_s: float) -> None:
        self.door = door
        self.debounce = Debouncer(debounce_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_change: DoorCallback | None = None
        self.failures = 0

    def start(self, on_change: DoorCallback) -> None:
        """Begin reporting changes."""
        self._on_change = on_change
        self._thread = threading.Thread(target=self._guarded, name=f"door-{self.door}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(2.0)

    def _emit_if_stable(self) -> None:
        state = self.debounce.poll(time.monotonic())
        if state is not None and self._on_change is not None:
            self._on_change(self.door, state)

    def _guarded(self) -> None:
        backoff, last = 1.0, ""
        while not self._stop.is_set():
            try:
                self._run()
            except Exception as e:  # keep the door alive whatever happens
                if repr(e) != last:  # say it once, not every retry
                    log.exception("door %s: input failed; retrying", self.door)
                    last = repr(e)
                self.failures += 1
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)

    def _run(self) -> None:
        raise NotImplementedError


class LineDoor(_Threaded):
    """Lines "open"/"closed" from a pty slave or FIFO; reopened when the writer goes away."""

    def __init__(self, door: str, path: str, debounce_s: float = 0.03) -> None:
        super().__init__(door, debounce_s)
        self.path = path
        self.bad_lines = 0
        self.reopens = 0

    def stats(self) -> dict[str, int]:
        """Counters for health."""
        return {"bad_lines": self.bad_lines, "reopens": self.reopens, "failures": self.failures}

    def _run(self) -> None:
        backoff = 0.1
        opened_before = False
        while not self._stop.is_set():
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
            except OSError as e:
                log.warning("door %s: cannot open %s: %s", self.door, self.path, e)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if opened_before:
                self.reopens += 1
            opened_before = True
            backoff = 0.1
            try:
                if os.isatty(fd):
                    tty.setraw(fd, termios.TCSANOW)  # no echo back to the writer, no line edit
                self._read(fd)
            except OSError as e:
                log.warning("door %s: %s failed: %s", self.door, self.path, e)
            finally:
                os.close(fd)
            self._stop.wait(backoff)

    def _read(self, fd: int) -> None:
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], POLL_S * 5)
            if ready:
                data = os.read(fd, 4096)
                if not data:  # FIFO without a writer: wait for one
                    self._stop.wait(0.05)
                else:
                    pending += data
                    *lines, pending = pending.replace(b"\r", b"\n").split(b"\n")
                    now = time.monotonic()
                    for raw in lines:
                        line = raw.strip().decode("ascii", "replace").lower()
                        if not line:
                            continue
                        if line in STATES:
                            self.debounce.observe(line, now)
                        else:
                            self.bad_lines += 1
                            log.warning("door %s: bad line %r ignored", self.door, line[:40])
                    if len(pending) > 256:  # a writer that never sends a newline
                        self.bad_lines += 1
                        pending = b""
            self._emit_if_stable()


class GpioDoor(_Threaded):
    """A contact on a Raspberry Pi GPIO pin (gpiozero, lgpio pin factory), polled."""

    def __init__(self, door: str, pin: int, active_low: bool = True,
                 debounce_s: float = 0.03) -> None:
        super().__init__(door, debounce_s)
        self.pin, self.active_low = pin, active_low
        self._dev: Any = None

    def stats(self) -> dict[str, int]:
        """Counters for health."""
        return {"pin": self.pin, "failures": self.failures}

    def _run(self) -> None:
        from gpiozero import Button  # Pi only: imported when a GPIO door exists

        # Contact to ground with the internal pull-up: a closed door pulls the pin low.
        self._dev = Button(self.pin, pull_up=self.active_low)
        try:
            while not self._stop.is_set():
                self.debounce.observe("closed" if self._dev.is_pressed else "open",
                                      time.monotonic())
                self._emit_if_stable()
                self._stop.wait(POLL_S)
        finally:
            with contextlib.suppress(Exception):
                self._dev.close()


def make_door(door: str, source: str, active_low: bool = True,
              debounce_s: float = 0.03) -> DoorInput:
    """A door input from a source string: `gpio:<pin>` or `line:<path>`."""
    kind, _, arg = source.partition(":")
    if kind == "gpio" and arg.isdigit():
        return GpioDoor(door, int(arg), active_low, debounce_s)
    if kind == "line" and arg:
        return LineDoor(door, arg, debounce_s)
    raise ValueError(f"door source {source!r} must be gpio:<pin> or line:<path>")
