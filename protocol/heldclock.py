"""A simulated clock that stands still while any process of the run is held up.

A sped-up run multiplies every real delay by its speed: at x60 a process kept off the CPU for
170 ms by other jobs misses 10 custody seconds of frames and reads, a recording gap or an
absence no real device would have. So in a simulated run custody time runs only while every
process keeps up:

- every process of the run (simulator, supervisor, room nodes) says it has caught up: a
  thread writes (pid, real time) into its own slot file `<alive dir>/<pid>` every few
  milliseconds (`keep_alive`, started by `from_env` when CUSTODY_CLOCK_ALIVE names the
  directory), but only while every check the process registered with `hold_while` passes
  (its work queues are short: a node's camera worker has no frames waiting, the
  supervisor's inbox is nearly empty), so a process that runs but falls behind holds time
  as one that does not run at all;
- the simulator's `ClockHolder` renews a lease in the clock file from the oldest of those
  (and its own) renewals, and custody time never passes the lease: whoever stalls stops
  time for everyone within `lease_s` real seconds, and time goes on from where it stopped;
- a process whose slot is stale for more than `max_hold_s` real seconds no longer holds time
  (a hung or stopped process must not freeze the run; it is counted), nor does one that has
  exited (a node the scenario kills).

Clock file, little-endian, 32 bytes: seq (u64), start, anchor, lease (f64 Unix seconds);
the writer makes seq odd while writing (a sequence lock), so a reader that sees seq odd or
changed under it reads again. Slot file: pid (u64), real time (f64). Readers use only the
clock file, so time stays continuous whoever renews.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .clock import Clock

CLOCK_FORMAT = "<Qddd"
CLOCK_SIZE = struct.calcsize(CLOCK_FORMAT)
SLOT_FORMAT = "<Qd"
SLOT_SIZE = struct.calcsize(SLOT_FORMAT)
FOREVER_S = 10 * 365 * 86400.0


@dataclass(frozen=True)
class HeldClock(Clock):
    """A simulated clock that never runs past the lease in `path`."""

    path: str = ""
    alive: str = ""  # the run's alive directory (passed on to children)
    every: float = 0.0  # real seconds between a process's alive renewals
    _map: list[mmap.mmap] = field(default_factory=list, repr=False, compare=False)
    _last: list[float] = field(default_factory=list, repr=False, compare=False)

    def _read(self) -> tuple[float, float, float]:
        if not self._map:
            with open(self.path, "rb") as f:
                self._map.append(mmap.mmap(f.fileno(), CLOCK_SIZE, access=mmap.ACCESS_READ))
        m = self._map[0]
        deadline = 0.0
        for i in range(1_000_000):
            (seq,) = struct.unpack_from("<Q", m, 0)
            start, anchor, lease = struct.unpack_from("<ddd", m, 8)
            if not seq & 1 and struct.unpack_from("<Q", m, 0)[0] == seq:
                self._last[:] = [start, anchor, lease]
                return start, anchor, lease
            # A write in progress: its writer may be a thread of this process waiting for the
            # GIL, or a process kept off the CPU. The last consistent values still hold (time
            # up to their lease, never past it), so use them rather than spin.
            if self._last:
                return self._last[0], self._last[1], self._last[2]
            if i == 0:
                deadline = time.monotonic() + 5.0
            elif time.monotonic() > deadline:
                break
            time.sleep(0.0005)
        raise RuntimeError(f"held clock {self.path}: no consistent read for 5 s")

    def now(self) -> float:
        """Simulated Unix time, stopped at the lease."""
        start, anchor, lease = self._read()
        return start + (min(time.time(), lease) - anchor) * self.speed

    def env(self) -> dict[str, str]:
        """Environment variables that give a child process this held clock (and a slot)."""
        out = {**super().env(), "CUSTODY_CLOCK_FILE": self.path}
        if self.alive:
            out["CUSTODY_CLOCK_ALIVE"] = self.alive
            out["CUSTODY_CLOCK_ALIVE_S"] = repr(self.every)
        return out


class Slot:
    """This process's alive slot: (pid, real time), rewritten every `every` real seconds by
    a daemon thread for as long as the process runs."""

    def __init__(self, directory: Path, every: float) -> None:
        self.path = directory / str(os.getpid())
        self.path.write_bytes(struct.pack(SLOT_FORMAT, os.getpid(), time.time()))
        self._f = open(self.path, "r+b")  # noqa: SIM115 - kept open with the map
        self._map = mmap.mmap(self._f.fileno(), SLOT_SIZE)
        self.every = every
        self._thread = threading.Thread(target=self._run, name="clock-alive", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pid = os.getpid()
        while True:
            if all(_passes(p) for p in _probes):
                self._map[:] = struct.pack(SLOT_FORMAT, pid, time.time())
            time.sleep(self.every)


_slot: list[Slot] = []  # at most one per process
_probes: list[Callable[[], bool]] = []
probe_errors = 0  # checks that raised (counted as passed: a broken check must not hang a run)


def _passes(probe: Callable[[], bool]) -> bool:
    global probe_errors
    try:
        return bool(probe())
    except Exception:
        probe_errors += 1
        return True


def hold_while(caught_up: Callable[[], bool]) -> None:
    """In a simulated run on a held clock, let custody time run only while `caught_up()`
    (called from another thread, every few ms: keep it cheap); elsewhere it is never
    called."""
    _probes.append(caught_up)


def keep_alive(directory: str, every: float) -> None:
    """Start this process's alive slot in `directory` (once per process)."""
    if not _slot:
        _slot.append(Slot(Path(directory), every))


def held_from_env(base: Clock, e: Mapping[str, str]) -> HeldClock:
    """The held clock of CUSTODY_CLOCK_FILE (and this process's slot in CUSTODY_CLOCK_ALIVE);
    ValueError names what is wrong."""
    try:
        every = float(e.get("CUSTODY_CLOCK_ALIVE_S", "0.01"))
    except ValueError:
        raise ValueError("CUSTODY_CLOCK_ALIVE_S is not a number") from None
    if not 0.001 <= every <= 1.0:
        raise ValueError("CUSTODY_CLOCK_ALIVE_S must be within 0.001..1 s")
    held = HeldClock(base.speed, base.start, base.anchor, e["CUSTODY_CLOCK_FILE"],
                     e.get("CUSTODY_CLOCK_ALIVE", ""), every)
    try:
        held._read()
        if held.alive:
            keep_alive(held.alive, every)
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"CUSTODY_CLOCK_FILE {held.path}: {exc}") from None
    return held


class ClockHolder:
    """The writer of a held clock: `renew()` every quarter of `lease_s` real seconds lets
    custody time run while every live slot in `alive` is fresh (see the module)."""

    def __init__(self, path: Path, speed: float, start: float, lease_s: float,
                 alive: Path | None = None, max_hold_s: float = 2.0) -> None:
        if speed <= 0 or lease_s <= 0:
            raise ValueError("held clock: speed and lease must be > 0")
        self.path, self.speed, self.lease_s = path, speed, lease_s
        self.alive, self.max_hold_s = alive, max_hold_s
        if alive is not None:
            alive.mkdir(parents=True, exist_ok=True)
            for old in alive.iterdir():  # a work dir used again: its pids mean nothing now
                with contextlib.suppress(OSError):
                    old.unlink()
        now = time.time()
        self.start, self.anchor, self.lease = start, now, now + lease_s
        self.seq = 0
        self.stopped_s = 0.0  # real seconds custody time stood still, in total
        self.stops = 0
        self.held_by: dict[int, int] = {}  # pid (-1: the holder itself) -> stops it caused
        self.gave_up: dict[int, int] = {}  # pid -> times its stale slot stopped holding time
        self._ignored: dict[int, float] = {}  # pid -> its slot time when we stopped waiting
        self._slots: dict[str, tuple[int, mmap.mmap]] = {}
        self._scanned = 0.0
        path.write_bytes(struct.pack(CLOCK_FORMAT, 0, self.start, self.anchor, self.lease))
        self._f = open(path, "r+b")  # noqa: SIM115 - kept open with the map
        self._map = mmap.mmap(self._f.fileno(), CLOCK_SIZE)

    def clock(self) -> HeldClock:
        """A reader of this clock for this process and, through env(), its children."""
        return HeldClock(self.speed, self.start, self.anchor, str(self.path),
                         str(self.alive) if self.alive is not None else "", self.lease_s / 4)

    def _write(self) -> None:
        self.seq += 1
        self._map[:8] = struct.pack("<Q", self.seq)  # odd: being written
        self._map[8:] = struct.pack("<ddd", self.start, self.anchor, self.lease)
        self.seq += 1
        self._map[:8] = struct.pack("<Q", self.seq)

    def _scan(self, now: float) -> None:
        """Open the slots of processes started since the last scan (every 0.1 s)."""
        if self.alive is None or now - self._scanned < 0.1:
            return
        self._scanned = now
        for name in os.listdir(self.alive):
            if name in self._slots or not name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError):
                with open(self.alive / name, "rb") as f:
                    m = mmap.mmap(f.fileno(), SLOT_SIZE, access=mmap.ACCESS_READ)
                self._slots[name] = (int(name), m)

    def _oldest(self, now: float) -> tuple[float, int | None]:
        """The oldest renewal among live slots (now when none is older) and whose it is."""
        oldest, who = now, None
        for name, (pid, m) in list(self._slots.items()):
            _, seen = struct.unpack_from(SLOT_FORMAT, m, 0)
            if pid == os.getpid():
                continue  # this process's slot: renew() itself proves it runs
            if now - seen > self.lease_s and not _running(pid):  # exited (or was killed)
                m.close()
                del self._slots[name]
                continue
            if now - seen > self.max_hold_s:
                if self._ignored.get(pid) != seen:  # hung: stop waiting for it, count it
                    self._ignored[pid] = seen
                    self.gave_up[pid] = self.gave_up.get(pid, 0) + 1
                continue
            if seen < oldest:
                oldest, who = seen, pid
        return oldest, who

    def renew(self, local: float | None = None, until: float | None = None) -> None:
        """Let custody time run until `lease_s` after the oldest live renewal (never back);
        `local`: the holder's own process's progress mark (its oldest caught-up time);
        `until`: a custody time (Unix seconds) not to run past until a later renew moves it
        (the next thing the holder must do at an exact custody time)."""
        now = time.time()
        self._scan(now)
        oldest, who = self._oldest(now)
        if local is not None and local < oldest:  # never given up: it is this process
            oldest, who = local, -1
        if now > self.lease:  # time stood still since the lease ran out: go on from there
            self.start += (self.lease - self.anchor) * self.speed
            self.stopped_s += now - self.lease
            if not self._standing:  # a new stop, caused by whoever was oldest before
                self.stops += 1
                culprit = -1 if self._last_holder is None else self._last_holder
                self.held_by[culprit] = self.held_by.get(culprit, 0) + 1
            self.anchor = now
            self.lease = now  # from here: custody time runs on from where it stopped
        self._last_holder = who
        lease = min(now, oldest) + self.lease_s
        if until is not None:  # the real time at which custody time reaches `until`
            cap = self.anchor + (until - self.start) / self.speed
            if cap < lease:
                lease, who = cap, -1
                self._last_holder = who
        self.lease = max(self.lease, lease)
        self._standing = self.lease <= now
        self._write()

    _last_holder: int | None = None  # whose renewal was oldest at the last renew()
    _standing = False  # time stands still right now

    def close(self) -> None:
        """Let time run on freely from now (for processes still stopping); idempotent."""
        if self._map.closed:
            return
        self.renew()
        self.lease += FOREVER_S
        self._write()
        self._map.close()
        self._f.close()
        for _, m in self._slots.values():
            m.close()
        self._slots.clear()


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
