"""The held clock of simulated runs: custody time stands still while any process of the run
is held up, goes on from where it stopped, and never waits for a hung or exited process."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from protocol.clock import from_env
from protocol.heldclock import ClockHolder, HeldClock

ROOT = Path(__file__).resolve().parent.parent
SPEED = 60.0
CHILD = """
import os, sys, time
from protocol.clock import from_env
from protocol.heldclock import hold_while
c = from_env()
if len(sys.argv) > 1:  # behind while that file exists (a queue that is not empty)
    hold_while(lambda: not os.path.exists(sys.argv[1]))
print(type(c).__name__, c.now(), flush=True)
time.sleep(60)
"""


class Renewing:
    """A holder renewed by a thread, as the simulator does."""

    def __init__(self, tmp: Path, lease_s: float = 0.04, max_hold_s: float = 1.0) -> None:
        self.h = ClockHolder(tmp / "clock", SPEED, 1_000_000.0, lease_s, alive=tmp / "alive",
                             max_hold_s=max_hold_s)
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.h.renew()
            time.sleep(self.h.lease_s / 4)

    def close(self) -> None:
        self.stop.set()
        self.t.join(2)
        self.h.close()


def child(clock: HeldClock, behind: Path | None = None) -> subprocess.Popen[str]:
    """A process on the held clock (it keeps an alive slot); waits until it has one."""
    argv = [sys.executable, "-c", CHILD] + ([str(behind)] if behind else [])
    p = subprocess.Popen(argv, env={**os.environ, **clock.env()},
                         cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    kind, _ = p.stdout.readline().split()
    assert kind == "HeldClock"
    time.sleep(0.3)  # the holder scans for new slots every 0.1 s
    return p


def test_a_reader_elsewhere_reads_the_holders_time(tmp_path):
    r = Renewing(tmp_path)
    try:
        c = r.h.clock()
        other = from_env(c.env())
        assert isinstance(other, HeldClock)
        assert abs(other.now() - c.now()) < 0.5  # custody s: a few real ms at x60
        t0 = c.now()
        time.sleep(0.2)
        assert 0.1 * SPEED < c.now() - t0 < 0.5 * SPEED  # it runs while renewed
    finally:
        r.close()


def test_time_stops_at_the_lease_and_goes_on_from_there(tmp_path):
    h = ClockHolder(tmp_path / "clock", SPEED, 1_000_000.0, 0.02)
    c = h.clock()
    h.renew()
    before = h.stops  # a busy machine may have held it up already
    time.sleep(0.2)  # nobody renews: time stood still 20 ms after the renewal
    stood = c.now()
    assert stood - 1_000_000.0 <= (0.02 + 0.05) * SPEED
    time.sleep(0.05)
    assert c.now() == stood
    h.renew()
    assert h.stops == before + 1 and h.stopped_s > 0.1 and h.held_by == {-1: h.stops}
    assert abs(c.now() - stood) < 0.05 * SPEED  # on from where it stood, no jump
    h.close()


def test_a_stopped_process_holds_time_until_the_holder_stops_waiting(tmp_path):
    r = Renewing(tmp_path, max_hold_s=1.0)
    p = child(r.h.clock())
    c = r.h.clock()
    try:
        os.kill(p.pid, signal.SIGSTOP)  # kept off the CPU
        time.sleep(0.1)
        t0 = c.now()
        time.sleep(0.5)
        assert c.now() - t0 < 0.05 * SPEED  # stood still (0.5 real s would be 30 custody s)
        assert r.h.held_by.get(p.pid, 0) >= 1
        time.sleep(1.0)  # past max_hold_s: a hung process must not freeze the run
        t1 = c.now()
        time.sleep(0.2)
        assert c.now() - t1 > 0.1 * SPEED
        assert r.h.gave_up.get(p.pid) == 1
        os.kill(p.pid, signal.SIGCONT)  # it runs again and holds time again if it stalls
        time.sleep(0.3)
        os.kill(p.pid, signal.SIGSTOP)
        time.sleep(0.1)
        t2 = c.now()
        time.sleep(0.3)
        assert c.now() - t2 < 0.05 * SPEED
        os.kill(p.pid, signal.SIGCONT)
    finally:
        p.kill()
        p.wait()
        r.close()


def test_a_process_that_runs_but_is_behind_holds_time(tmp_path):
    r = Renewing(tmp_path, max_hold_s=5.0)
    behind = tmp_path / "behind"
    p = child(r.h.clock(), behind)
    c = r.h.clock()
    try:
        behind.touch()  # its queue fills up
        time.sleep(0.2)
        t0 = c.now()
        time.sleep(0.4)
        assert c.now() - t0 < 0.05 * SPEED
        behind.unlink()  # caught up: time runs again
        time.sleep(0.2)
        t1 = c.now()
        time.sleep(0.3)
        assert c.now() - t1 > 0.2 * SPEED
        assert r.h.gave_up == {}
    finally:
        p.kill()
        p.wait()
        r.close()


def test_an_exited_process_does_not_hold_time(tmp_path):
    r = Renewing(tmp_path, max_hold_s=30.0)  # long: an exit is noticed without waiting
    p = child(r.h.clock())
    c = r.h.clock()
    try:
        p.kill()
        p.wait()
        time.sleep(0.3)
        t0 = c.now()
        time.sleep(0.3)
        assert c.now() - t0 > 0.2 * SPEED
        assert r.h.gave_up == {}  # gone, not hung
    finally:
        r.close()


def test_firmware_clock_follows_the_held_clock(tmp_path):
    mpy = ROOT / ".venv" / "bin" / "micropython"
    if not mpy.exists():
        pytest.fail("the MicroPython VM is part of the set-up (setup.sh); run it first")
    h = ClockHolder(tmp_path / "clock", SPEED, 1_000_000.0, 0.02)
    c = h.clock()
    h.renew()
    time.sleep(0.1)  # not renewed: stood still
    script = tmp_path / "t.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT / 'firmware/lib')!r})\n"
                      "import fwclock\nprint(fwclock.now_ms())\n")
    r = subprocess.run([str(mpy), str(script)], env={**os.environ, **c.env()},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == c.now_ms()  # the same stopped instant, to the millisecond
    h.close()


def test_bad_alive_interval_is_named(tmp_path):
    h = ClockHolder(tmp_path / "clock", SPEED, 1_000_000.0, 0.02)
    env = {**h.clock().env(), "CUSTODY_CLOCK_ALIVE_S": "fast"}
    with pytest.raises(ValueError, match="CUSTODY_CLOCK_ALIVE_S"):
        from_env(env)
    h.close()


def test_time_stands_at_the_next_due_step_until_it_is_done(tmp_path):
    """`until`: custody time runs up to the next thing the holder must do at an exact time
    and no further, however late its thread is, and goes on once `until` moves past it."""
    h = ClockHolder(tmp_path / "clock", SPEED, 1_000_000.0, 0.04)
    c = h.clock()
    try:
        due = 1_000_000.0 + 3.0  # custody s: 3 custody s (50 ms real) ahead
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # renewed for 0.3 real s = 18 custody s
            h.renew(until=due)
            time.sleep(0.005)
            if time.monotonic() > deadline - 1.7:
                break
        assert c.now() == pytest.approx(due, abs=1e-3)  # stood at the step, not 18 s on
        assert h.stops == 1 and h.held_by == {-1: 1}
        for _ in range(20):  # the step done: the next one is far off
            h.renew(until=due + 3600)
            time.sleep(0.005)
        assert due + 1.0 < c.now() < due + 60  # runs on from where it stood, no jump
    finally:
        h.close()
